/* MSMA landmark editor: a canvas for correcting 68-point face landmarks, embedded in Gradio through gr.HTML.
 *
 * The server (annotate/editor/bridge.py) sends the photo and the current points as the component's value; every
 * change made here is painted at once and sent to the server function lmk_apply (one POST, one op at a time, in
 * order). The server saves it as a new revision and answers with its authoritative state and the id of the last op
 * it processed, so the editor shows  server state + ops not yet answered  (optimistic, ordered, nothing lost).
 *
 * Coordinates: "world" = original photo pixels, pixel centres at integers (the store's convention);
 * screen (CSS px, relative to the canvas) = (world - origin) * zoom.
 */
(function () {
  'use strict';
  if (window.MSMALandmarkEditor) return;

  var OUTSIDE = 0, OCCLUDED = 1, VISIBLE = 2;
  var VIS_NAMES = ['outside', 'occluded', 'visible'];
  var HIT = { mouse: 10, pen: 14, touch: 22 };
  var DRAG_THRESHOLD = { mouse: 3, pen: 4, touch: 8 };
  var MIN_ZOOM = 0.02, MAX_ZOOM = 40;
  var COALESCE_MS = 500;  // keyboard nudges / scale steps closer than this are saved as one edit
  var RETRIES = 3;  // an op whose request failed is sent again this many times (the server skips ops it has done)

  function el(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

  function has(p) { return p && p[0] !== null && p[1] !== null && isFinite(p[0]) && isFinite(p[1]); }

  function Editor(root, props, watch, rpc) {
    var self = this;
    this.root = root.querySelector('.lmk-root') || root;
    root = this.root;
    this.rpc = rpc;
    this.props = props;
    var cfg = props.skeleton;
    this.names = cfg.names;
    this.n = cfg.names.length;
    this.groups = cfg.groups;  // [name, first, last, closed, [r, g, b]]
    this.edges = cfg.edges;
    this.colour = new Array(this.n);
    this.groupOf = new Array(this.n);
    this.groups.forEach(function (g, gi) {
      for (var i = g[1]; i <= g[2]; i++) {
        self.colour[i] = 'rgb(' + g[4].join(',') + ')';
        self.groupOf[i] = gi;
      }
    });
    this.height = props.canvas_height || 620;

    this.doc = null;            // {image_id, face, doc, width, height, readonly}
    this.base = null;           // the server's state: {points, vis, revision}
    this.points = [];           // shown: base + ops not yet answered
    this.vis = [];
    this.inflight = null;       // the op sent, not yet answered
    this.outbox = [];           // ops waiting for it
    this.nextId = 1;
    this.lastAck = 0;
    this.lastSeq = 0;
    this.revByDoc = {};         // doc -> last revision the server reported (base of edits sent after a switch)
    this.coalescing = null;     // {kind, op, timer}: keyboard edits being merged into one op
    this.sel = new Set();
    this.primary = null;
    this.hover = null;
    this.view = { zoom: 1, ox: 0, oy: 0, fitted: false };
    this.pointers = new Map();
    this.gesture = null;
    this.placing = false;
    this.opts = { labels: false, skeleton: true, advance: false, overlay: true };
    this.image = null;
    this.imageKey = null;
    this.timings = [];          // per committed edit: id, kind, points, t_input, t_applied, t_saved, revision, ok
    this.message = '';
    this.conflict = false;
    this.canUndo = false;
    this.canRedo = false;
    this.frame = null;

    this.build();
    watch('value', function () { self.receive(self.props.value); });
    this.receive(props.value);
    if (window.ResizeObserver) {
      new ResizeObserver(function () { self.resize(); }).observe(this.stage);
    }
    this.resize();
    root.__editor = this;
    Editor.instances.push(this);
  }
  Editor.instances = [];

  // ------------------------------------------------------------------------------------------------ DOM
  Editor.prototype.build = function () {
    var self = this;
    var root = this.root;
    root.innerHTML = '';
    root.setAttribute('tabindex', '0');
    var bar = el('div', { class: 'lmk-toolbar' }, root);
    function button(label, title, fn, cls) {
      var b = el('button', { type: 'button', title: title, class: 'lmk-btn ' + (cls || '') }, bar, label);
      b.addEventListener('click', function (e) { e.preventDefault(); fn(); self.root.focus({ preventScroll: true }); });
      return b;
    }
    function sep() { el('span', { class: 'lmk-sep' }, bar); }
    this.undoBtn = button('↶ Undo', 'undo (z or Ctrl+Z)', function () { self.undo(); }, 'lmk-undo');
    this.redoBtn = button('↷ Redo', 'redo (y or Ctrl+Y)', function () { self.redo(); }, 'lmk-redo');
    sep();
    button('Fit face', 'zoom to the face (0)', function () { self.fitFace(); });
    button('Fit photo', 'show the whole photo (9)', function () { self.fitImage(); });
    button('100%', 'one screen pixel per photo pixel (1; 2 and 4 for 200% / 400%)', function () { self.zoomTo(1); });
    button('−', 'zoom out (-, or the mouse wheel)', function () { self.zoomBy(1 / 1.25); });
    button('+', 'zoom in (+, or the mouse wheel)', function () { self.zoomBy(1.25); });
    sep();
    this.groupSelect = el('select', { class: 'lmk-group', title: 'select a whole group, then drag any of its points ' +
      'to move it or a corner handle to scale it (g selects the group of the selected point)' }, bar);
    el('option', { value: '' }, this.groupSelect, 'group…');
    this.groups.forEach(function (g, gi) { el('option', { value: String(gi) }, self.groupSelect, g[0].replace('_', ' ')); });
    el('option', { value: 'all' }, this.groupSelect, 'whole face');
    this.groupSelect.addEventListener('change', function () {
      var v = self.groupSelect.value;
      if (v === 'all') self.selectAll(); else if (v !== '') self.selectGroup(Number(v));
      self.groupSelect.value = '';
      self.root.focus({ preventScroll: true });
    });
    this.pointSelect = el('select', { class: 'lmk-point', title: 'pick a point by number or name (. and , step)' }, bar);
    el('option', { value: '' }, this.pointSelect, 'point…');
    this.names.forEach(function (name, i) {
      el('option', { value: String(i) }, self.pointSelect, (i < 10 ? '0' : '') + i + ' ' + name);
    });
    this.pointSelect.addEventListener('change', function () {
      if (self.pointSelect.value !== '') self.selectPoint(Number(self.pointSelect.value), true);
      self.root.focus({ preventScroll: true });
    });
    sep();
    this.visButtons = [VISIBLE, OCCLUDED, OUTSIDE].map(function (v) {
      return button(VIS_NAMES[v], 'mark the selected point(s) ' + VIS_NAMES[v] + ' (v cycles)',
        function () { self.setVisibility(v); }, 'lmk-vis lmk-vis-' + VIS_NAMES[v]);
    });
    sep();
    function toggle(key, label, title) {
      var lab = el('label', { class: 'lmk-toggle', title: title }, bar);
      var box = el('input', { type: 'checkbox' }, lab);
      box.checked = self.opts[key];
      lab.appendChild(document.createTextNode(label));
      box.addEventListener('change', function () { self.opts[key] = box.checked; self.redraw(); });
      self['toggle_' + key] = box;
    }
    toggle('labels', 'numbers', 'show every point number (l)');
    toggle('skeleton', 'lines', 'show the skeleton lines');
    toggle('advance', 'auto-next', 'after moving a point, select the next one');
    button('?', 'mouse, touch and keyboard help', function () { self.help.hidden = !self.help.hidden; }, 'lmk-help-btn');

    this.banner = el('div', { class: 'lmk-banner', hidden: '' }, root);
    this.bannerText = el('span', {}, this.banner);
    var reload = el('button', { type: 'button', class: 'lmk-btn' }, this.banner, 'Reload their version');
    reload.addEventListener('click', function () { self.flushCoalesce(); self.send({ op: 'reload' }, 'reload'); });

    this.stage = el('div', { class: 'lmk-stage' }, root);
    this.stage.style.height = this.height + 'px';
    this.canvas = el('canvas', { class: 'lmk-canvas' }, this.stage);
    this.ctx = this.canvas.getContext('2d');
    this.empty = el('div', { class: 'lmk-empty' }, this.stage, 'no image open');

    var status = el('div', { class: 'lmk-status' }, root);
    this.statusSel = el('span', { class: 'lmk-status-sel' }, status);
    this.statusZoom = el('span', { class: 'lmk-status-zoom' }, status);
    this.statusSave = el('span', { class: 'lmk-status-save' }, status);
    this.statusMsg = el('div', { class: 'lmk-status-msg' }, root);
    this.help = el('div', { class: 'lmk-help', hidden: '' }, root);
    this.help.innerHTML =
      '<b>Mouse / touch</b>: drag a point to move it (a click only selects it); drag the photo to pan; wheel or ' +
      'pinch to zoom; Shift+click adds a point to the selection, Shift+drag on the photo selects a box; double-click ' +
      'a point selects its group; with several points selected, drag any of them to move them all and a corner ' +
      'handle to scale them.<br><b>Keys</b>: arrows nudge the selection by one screen pixel (Shift: 10); ' +
      '<b>[</b> <b>]</b> shrink / grow it; <b>.</b> <b>,</b> or Tab next / previous point; <b>g</b> whole group; ' +
      '<b>Ctrl+A</b> all points; <b>v</b> cycle visible → occluded → outside; <b>z</b> / <b>y</b> undo / redo; ' +
      '<b>0</b> fit face, <b>9</b> fit photo, <b>1</b> <b>2</b> <b>4</b> 100% / 200% / 400%, <b>+</b> <b>−</b> ' +
      'zoom; <b>l</b> numbers; <b>h</b> hide the overlay while held; <b>Esc</b> cancel / deselect. ' +
      'Every change is saved at once.';

    var c = this.canvas;
    c.addEventListener('pointerdown', function (e) { self.onDown(e); });
    c.addEventListener('pointermove', function (e) { self.onMove(e); });
    c.addEventListener('pointerup', function (e) { self.onUp(e, false); });
    c.addEventListener('pointercancel', function (e) { self.onUp(e, true); });
    c.addEventListener('pointerleave', function () { if (!self.gesture && self.hover !== null) { self.hover = null; self.redraw(); } });
    c.addEventListener('wheel', function (e) { self.onWheel(e); }, { passive: false });
    c.addEventListener('dblclick', function (e) { self.onDblClick(e); });
    c.addEventListener('contextmenu', function (e) { e.preventDefault(); });
    document.addEventListener('keydown', function (e) { self.onKey(e, true); });
    document.addEventListener('keyup', function (e) { self.onKey(e, false); });
  };

  Editor.prototype.visible = function () { return this.root.offsetParent !== null && this.stage.clientWidth > 0; };

  Editor.prototype.resize = function () {
    var w = this.stage.clientWidth, h = this.stage.clientHeight;
    if (w <= 0 || h <= 0) return;
    var dpr = window.devicePixelRatio || 1;
    var old = this.cssSize;
    this.cssSize = { w: w, h: h };
    this.canvas.style.width = w + 'px';
    this.canvas.style.height = h + 'px';
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.dpr = dpr;
    if (!this.view.fitted && this.doc) this.fitFace();
    else if (old && this.doc) {  // keep the centre of the view where it was
      this.view.ox += (old.w - w) / 2 / this.view.zoom;
      this.view.oy += (old.h - h) / 2 / this.view.zoom;
    }
    this.redraw(true);
  };

  // ------------------------------------------------------------------------------------------------ server sync
  Editor.prototype.receive = function (v) {
    if (!v || typeof v !== 'object') return;
    var ack = v.ack || 0, now = performance.now();
    for (var k = 0; k < this.timings.length; k++) {
      var t = this.timings[k];
      if (t.t_saved === null && t.id <= ack) {
        t.t_saved = now; t.revision = v.revision; t.ok = (v.refused || []).indexOf(t.id) < 0;
      }
    }
    this.lastAck = Math.max(this.lastAck, ack);
    if (v.error) { this.message = '⚠️ ' + v.error; this.redraw(); return; }
    if (v.image_id === undefined) return;
    if (v.doc !== undefined) this.revByDoc[v.doc] = v.revision;
    if (v.seq !== undefined) {  // answers can cross Gradio's own updates: only the newest state counts
      if (v.seq <= this.lastSeq) { this.redraw(); return; }
      this.lastSeq = v.seq;
    }
    if (v.session) this.session = v.session;
    var newDoc = !this.doc || v.doc !== this.doc.doc || v.image_id !== this.doc.image_id || v.face !== this.doc.face;
    if (newDoc && this.coalescing) this.flushCoalesce();  // a keyboard burst belongs to the face it was made on
    if (v.image && v.image.key !== this.imageKey) this.loadImage(v.image);
    else if (!v.image && v.image_id !== null && v.image_key !== this.imageKey && !this.refreshing) {
      this.refreshing = true;  // mounted after the photo was sent: ask again
      this.send({ op: 'refresh' }, 'refresh');
    }
    var imageChanged = !this.doc || v.image_id !== this.doc.image_id;
    this.doc = { image_id: v.image_id, face: v.face, doc: v.doc, width: v.width, height: v.height,
      readonly: !!v.readonly };
    this.base = { points: v.points || [], vis: v.vis || [], revision: v.revision };
    this.canUndo = !!v.can_undo;
    this.canRedo = !!v.can_redo;
    this.conflict = !!v.conflict;
    if (newDoc) {
      this.gesture = null;
      this.placing = false;
      if (imageChanged || !this.sel.size) {
        this.sel = new Set();
        this.primary = null;
        if (v.selected !== null && v.selected !== undefined) this.selectPoint(v.selected, false);
      }
    }
    this.message = v.message || '';
    this.rebuild();
    if (newDoc && (imageChanged || v.reset_view)) { this.view.fitted = false; if (this.cssSize) this.fitFace(); }
    this.empty.hidden = v.image_id !== null;
    this.redraw(true);
  };

  Editor.prototype.loadImage = function (info) {
    var self = this;
    var img = new Image();
    this.imageKey = info.key;
    img.onload = function () { if (self.imageKey === info.key) { self.image = img; self.redraw(true); } };
    img.src = info.src;
    this.image = null;
  };

  // shown state = the server's + every op of this face not yet answered (+ the keyboard edit being merged)
  Editor.prototype.rebuild = function () {
    var pts = this.base.points.map(function (p) { return [p[0], p[1]]; });
    var vis = this.base.vis.slice();
    var ops = (this.inflight ? [this.inflight] : []).concat(this.outbox);
    if (this.coalescing) ops.push(this.coalescing.op);
    var doc = this.doc.doc;
    ops.forEach(function (op) {
      if (op.doc !== doc) return;
      (op.changes || []).forEach(function (c) { pts[c[0]] = [c[1], c[2]]; vis[c[0]] = c[3]; });
    });
    this.points = pts;
    this.vis = vis;
  };

  Editor.prototype.changesFor = function (indices) {
    var self = this;
    return indices.map(function (i) {
      var p = self.points[i];
      return [i, has(p) ? p[0] : null, has(p) ? p[1] : null, self.vis[i]];
    });
  };

  Editor.prototype.send = function (op, kind, tInput) {
    op.id = this.nextId++;
    op.image_id = this.doc ? this.doc.image_id : null;
    op.face = this.doc ? this.doc.face : null;
    op.doc = this.doc ? this.doc.doc : null;
    if (op.op === 'set') {  // the whole face as shown, saved as-is if the tab has moved on before it is sent
      op.points = this.points.map(function (p) { return has(p) ? [p[0], p[1]] : [null, null]; });
      op.vis = this.vis.slice();
    }
    var rec = { id: op.id, kind: kind || op.op, points: (op.changes || []).length, t_input: tInput || performance.now(),
      t_applied: null, t_saved: null, revision: null, ok: null };
    this.timings.push(rec);
    if (this.timings.length > 2000) this.timings.splice(0, 1000);
    this.outbox.push(op);
    this.draw();  // paint now: the edit is on the canvas before the request goes out
    this.pump();
    return op.id;
  };

  // one op at a time, in order; a failed request is retried (the server skips an op it has already done)
  Editor.prototype.pump = function () {
    if (this.inflight || !this.outbox.length) return;
    var self = this, op = this.outbox.shift();
    op.session = this.session;
    if (op.op === 'set') op.revision = this.revByDoc[op.doc];
    this.inflight = op;
    var done = function (resp) {
      self.inflight = null;
      if (!resp || typeof resp !== 'object') {
        op.tries = (op.tries || 0) + 1;
        if (op.tries <= RETRIES) {
          self.outbox.unshift(op);
          self.message = '⚠️ the server did not answer; trying again…';
          self.redraw();
          setTimeout(function () { self.pump(); }, 400 * op.tries);
          return;
        }
        self.outbox = [];
        self.message = '⚠️ your last edits could not be saved (no answer from the server): reload the page';
        if (self.base) self.rebuild();
        self.redraw(true);
        return;
      }
      if (op.op === 'refresh') self.refreshing = false;
      self.receive(resp);
      self.pump();
    };
    var call = this.rpc && this.rpc.lmk_apply;
    if (!call) { done(null); return; }
    Promise.resolve().then(function () { return call(op); }).then(done, function () { done(null); });
  };

  Editor.prototype.pending = function () {
    return (this.inflight ? 1 : 0) + this.outbox.length + (this.coalescing ? 1 : 0);
  };

  Editor.prototype.idle = function () { return this.pending() === 0; };

  Editor.prototype.commit = function (indices, kind, tInput) {
    if (!indices.length || !this.doc || this.doc.readonly) return;
    this.flushCoalesce();
    this.send({ op: 'set', changes: this.changesFor(indices) }, kind, tInput);
  };

  // keyboard edits: merge a burst into one op (one revision, one undo step)
  Editor.prototype.coalesce = function (kind, indices) {
    var self = this;
    if (this.coalescing && this.coalescing.kind !== kind) this.flushCoalesce();
    if (!this.coalescing) this.coalescing = { kind: kind, op: { op: 'set', changes: [] }, t0: performance.now() };
    var c = this.coalescing;
    var byIndex = {};
    c.op.changes.forEach(function (ch) { byIndex[ch[0]] = ch; });
    this.changesFor(indices).forEach(function (ch) { byIndex[ch[0]] = ch; });
    c.op.changes = Object.keys(byIndex).map(function (k) { return byIndex[k]; });
    clearTimeout(c.timer);
    c.timer = setTimeout(function () { self.flushCoalesce(); }, COALESCE_MS);
  };

  Editor.prototype.flushCoalesce = function () {
    var c = this.coalescing;
    if (!c) return;
    clearTimeout(c.timer);
    this.coalescing = null;
    this.send(c.op, c.kind, performance.now());
  };


  Editor.prototype.undo = function () {
    if (!this.doc || this.doc.readonly) return;
    this.flushCoalesce();
    this.send({ op: 'undo' }, 'undo');
  };

  Editor.prototype.redo = function () {
    if (!this.doc || this.doc.readonly) return;
    this.flushCoalesce();
    this.send({ op: 'redo' }, 'redo');
  };

  // ------------------------------------------------------------------------------------------------ view
  Editor.prototype.toScreen = function (p) {
    return [(p[0] - this.view.ox) * this.view.zoom, (p[1] - this.view.oy) * this.view.zoom];
  };

  Editor.prototype.toWorld = function (sx, sy) {
    return [sx / this.view.zoom + this.view.ox, sy / this.view.zoom + this.view.oy];
  };

  Editor.prototype.fitBox = function (x0, y0, x1, y1) {
    if (!this.cssSize) return;
    var w = this.cssSize.w, h = this.cssSize.h;
    var bw = Math.max(x1 - x0, 8), bh = Math.max(y1 - y0, 8);
    var zoom = clamp(Math.min(w / bw, h / bh), MIN_ZOOM, MAX_ZOOM);
    this.view.zoom = zoom;
    this.view.ox = (x0 + x1) / 2 - w / 2 / zoom;
    this.view.oy = (y0 + y1) / 2 - h / 2 / zoom;
    this.view.fitted = true;
    this.redraw();
  };

  Editor.prototype.fitImage = function () {
    if (!this.doc) return;
    this.fitBox(-0.5, -0.5, this.doc.width - 0.5, this.doc.height - 0.5);
  };

  Editor.prototype.fitFace = function () {
    if (!this.doc) return;
    var xs = [], ys = [];
    for (var i = 0; i < this.n; i++) {
      if (this.vis[i] !== OUTSIDE && has(this.points[i])) { xs.push(this.points[i][0]); ys.push(this.points[i][1]); }
    }
    if (xs.length < 2) return this.fitImage();
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var side = Math.max(x1 - x0, y1 - y0, 16) * 1.7;
    var cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    this.fitBox(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2);
  };

  // zoom keeping the world point under screen (sx, sy) fixed
  Editor.prototype.zoomAt = function (zoom, sx, sy) {
    zoom = clamp(zoom, MIN_ZOOM, MAX_ZOOM);
    var w = this.toWorld(sx, sy);
    this.view.zoom = zoom;
    this.view.ox = w[0] - sx / zoom;
    this.view.oy = w[1] - sy / zoom;
    this.view.fitted = true;
    this.redraw();
  };

  Editor.prototype.zoomBy = function (f) {
    if (!this.cssSize) return;
    this.zoomAt(this.view.zoom * f, this.cssSize.w / 2, this.cssSize.h / 2);
  };

  // an absolute zoom (screen px per photo px), centred on the selection when there is one
  Editor.prototype.zoomTo = function (zoom) {
    if (!this.cssSize) return;
    var c = this.selectionCentre();
    if (c) {
      this.view.zoom = clamp(zoom, MIN_ZOOM, MAX_ZOOM);
      this.view.ox = c[0] - this.cssSize.w / 2 / this.view.zoom;
      this.view.oy = c[1] - this.cssSize.h / 2 / this.view.zoom;
      this.view.fitted = true;
      this.redraw();
    } else {
      this.zoomAt(zoom, this.cssSize.w / 2, this.cssSize.h / 2);
    }
  };

  Editor.prototype.ensureVisible = function (i) {
    if (!this.cssSize || !has(this.points[i])) return;
    var s = this.toScreen(this.points[i]);
    var m = 30;
    if (s[0] < m || s[1] < m || s[0] > this.cssSize.w - m || s[1] > this.cssSize.h - m) {
      this.view.ox = this.points[i][0] - this.cssSize.w / 2 / this.view.zoom;
      this.view.oy = this.points[i][1] - this.cssSize.h / 2 / this.view.zoom;
    }
  };

  // ------------------------------------------------------------------------------------------------ selection
  Editor.prototype.labelled = function (i) { return this.vis[i] !== OUTSIDE && has(this.points[i]); };

  Editor.prototype.selectPoint = function (i, reveal) {
    this.sel = new Set([i]);
    this.primary = i;
    this.placing = !has(this.points[i]);
    if (reveal) this.ensureVisible(i);
    this.redraw();
  };

  Editor.prototype.selectGroup = function (gi) {
    var g = this.groups[gi];
    this.sel = new Set();
    for (var i = g[1]; i <= g[2]; i++) if (has(this.points[i])) this.sel.add(i);
    this.primary = this.sel.size ? g[1] : null;
    this.placing = false;
    this.redraw();
  };

  Editor.prototype.selectAll = function () {
    this.sel = new Set();
    for (var i = 0; i < this.n; i++) if (has(this.points[i])) this.sel.add(i);
    this.primary = this.sel.size ? 0 : null;
    this.placing = false;
    this.redraw();
  };

  Editor.prototype.clearSelection = function () {
    this.sel = new Set();
    this.primary = null;
    this.placing = false;
    this.redraw();
  };

  Editor.prototype.selected = function () {
    var self = this;
    return Array.from(this.sel).filter(function (i) { return has(self.points[i]); }).sort(function (a, b) { return a - b; });
  };

  Editor.prototype.selectionCentre = function () {
    var idx = this.selected();
    if (!idx.length) return null;
    var b = this.bounds(idx);
    return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
  };

  Editor.prototype.bounds = function (idx) {
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, self = this;
    idx.forEach(function (i) {
      var p = self.points[i];
      x0 = Math.min(x0, p[0]); y0 = Math.min(y0, p[1]); x1 = Math.max(x1, p[0]); y1 = Math.max(y1, p[1]);
    });
    return [x0, y0, x1, y1];
  };

  Editor.prototype.hit = function (sx, sy, type) {
    var r = HIT[type] || HIT.mouse, best = null, bestD = r * r;
    for (var i = 0; i < this.n; i++) {
      if (!this.labelled(i)) continue;
      var s = this.toScreen(this.points[i]);
      var d = (s[0] - sx) * (s[0] - sx) + (s[1] - sy) * (s[1] - sy);
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  };

  // corner handles of the multi-point selection box (screen coordinates)
  Editor.prototype.handles = function () {
    var idx = this.selected();
    if (idx.length < 2) return null;
    var b = this.bounds(idx);
    var a = this.toScreen([b[0], b[1]]), c = this.toScreen([b[2], b[3]]);
    var pad = 10;
    a = [a[0] - pad, a[1] - pad]; c = [c[0] + pad, c[1] + pad];
    return { box: [a[0], a[1], c[0], c[1]], corners: [[a[0], a[1]], [c[0], a[1]], [c[0], c[1]], [a[0], c[1]]] };
  };

  Editor.prototype.hitHandle = function (sx, sy, type) {
    var h = this.handles();
    if (!h) return null;
    var r = (HIT[type] || HIT.mouse) * 0.8;
    for (var k = 0; k < 4; k++) {
      if (Math.abs(h.corners[k][0] - sx) <= r && Math.abs(h.corners[k][1] - sy) <= r) return k;
    }
    return null;
  };

  // ------------------------------------------------------------------------------------------------ editing
  // move the given points to start + (dx, dy), the shift limited so that every point stays inside the photo
  Editor.prototype.moveFrom = function (start, dx, dy) {
    var W = this.doc.width, H = this.doc.height;
    var lo = [-Infinity, -Infinity], hi = [Infinity, Infinity];
    start.forEach(function (s) {
      lo[0] = Math.max(lo[0], -s[1]); hi[0] = Math.min(hi[0], W - s[1]);
      lo[1] = Math.max(lo[1], -s[2]); hi[1] = Math.min(hi[1], H - s[2]);
    });
    dx = clamp(dx, lo[0], hi[0]); dy = clamp(dy, lo[1], hi[1]);
    var self = this;
    start.forEach(function (s) { self.points[s[0]] = [s[1] + dx, s[2] + dy]; });
  };

  Editor.prototype.scaleFrom = function (start, cx, cy, f) {
    var W = this.doc.width, H = this.doc.height, self = this;
    // largest factor <= f (or >= f when shrinking) that keeps every point inside the photo
    start.forEach(function (s) {
      var vx = s[1] - cx, vy = s[2] - cy;
      if (vx > 0) f = Math.min(f, (W - cx) / vx); else if (vx < 0) f = Math.min(f, (0 - cx) / vx);
      if (vy > 0) f = Math.min(f, (H - cy) / vy); else if (vy < 0) f = Math.min(f, (0 - cy) / vy);
    });
    f = Math.max(f, 0.05);
    start.forEach(function (s) { self.points[s[0]] = [cx + (s[1] - cx) * f, cy + (s[2] - cy) * f]; });
  };

  Editor.prototype.snapshot = function (idx) {
    var self = this;
    return idx.map(function (i) { return [i, self.points[i][0], self.points[i][1]]; });
  };

  Editor.prototype.setVisibility = function (v) {
    if (!this.doc || this.doc.readonly) return;
    var idx = Array.from(this.sel).sort(function (a, b) { return a - b; });
    if (!idx.length) return;
    var self = this;
    var missing = idx.filter(function (i) { return !has(self.points[i]); });
    if (v !== OUTSIDE && missing.length) {
      if (idx.length === 1) { this.placing = true; this.message = 'click on the photo where ' + this.label(idx[0]) + ' belongs'; this.redraw(); return; }
      idx = idx.filter(function (i) { return has(self.points[i]); });
    }
    idx = idx.filter(function (i) { return self.vis[i] !== v; });
    if (!idx.length) return;
    idx.forEach(function (i) { self.vis[i] = v; });
    this.commit(idx, 'visibility');
    this.redraw();
  };

  Editor.prototype.cycleVisibility = function () {
    if (this.primary === null) return;
    var next = { 2: OCCLUDED, 1: OUTSIDE, 0: VISIBLE }[this.vis[this.primary]];
    this.setVisibility(next);
  };

  Editor.prototype.nudge = function (dx, dy) {
    if (!this.doc || this.doc.readonly) return;
    var idx = this.selected();
    if (!idx.length) return;
    this.moveFrom(this.snapshot(idx), dx / this.view.zoom, dy / this.view.zoom);
    var self = this;
    idx.forEach(function (i) { if (self.vis[i] === OUTSIDE) self.vis[i] = VISIBLE; });
    this.coalesce('nudge', idx);
    this.redraw();
  };

  Editor.prototype.scaleSelection = function (f) {
    if (!this.doc || this.doc.readonly) return;
    var idx = this.selected();
    if (idx.length < 2) return;
    var c = this.selectionCentre();
    this.scaleFrom(this.snapshot(idx), c[0], c[1], f);
    this.coalesce('scale', idx);
    this.redraw();
  };

  Editor.prototype.step = function (delta) {
    var i = this.primary === null ? (delta > 0 ? -1 : 0) : this.primary;
    this.selectPoint(((i + delta) % this.n + this.n) % this.n, true);
  };

  Editor.prototype.label = function (i) { return (i < 10 ? '0' : '') + i + ' ' + this.names[i]; };

  // ------------------------------------------------------------------------------------------------ pointer input
  Editor.prototype.pos = function (e) {
    var r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  Editor.prototype.onDown = function (e) {
    if (!this.doc || this.doc.image_id === null) return;
    var p = this.pos(e);
    var type = e.pointerType || 'mouse';
    try { this.canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
    this.pointers.set(e.pointerId, p);
    this.root.focus({ preventScroll: true });
    e.preventDefault();
    if (this.pointers.size === 2) {  // second finger: pinch (cancels a drag in progress)
      if (this.gesture && this.gesture.type === 'drag' && this.gesture.active) this.restore(this.gesture.start);
      var pts = Array.from(this.pointers.values());
      this.gesture = { type: 'pinch', d0: Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]) || 1,
        m0: [(pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2], zoom0: this.view.zoom,
        o0: [this.view.ox, this.view.oy] };
      return;
    }
    if (this.pointers.size > 2) return;
    var g = { p0: p, type: null, active: false, pointerType: type, shift: e.shiftKey, t0: e.timeStamp };
    var editable = !this.doc.readonly;
    if (e.button === 1 || e.button === 2 || this.spaceDown) {
      g.type = 'pan'; g.active = true; g.o0 = [this.view.ox, this.view.oy];
    } else if (editable && this.hitHandle(p[0], p[1], type) !== null) {
      var idx = this.selected();
      var c = this.selectionCentre();
      var w0 = this.toWorld(p[0], p[1]);
      g.type = 'scale'; g.start = this.snapshot(idx); g.c = c;
      g.r0 = Math.max(Math.hypot(w0[0] - c[0], w0[1] - c[1]), 1e-6);
    } else {
      var i = this.hit(p[0], p[1], type);
      if (i !== null) {
        if (e.shiftKey) {
          g.type = 'toggle'; g.index = i;
        } else {
          if (!this.sel.has(i)) { this.sel = new Set([i]); }
          this.primary = i;
          this.placing = false;
          g.type = 'drag'; g.index = i;
        }
        g.start = null;  // taken when the drag starts (the selection may still change)
      } else if (this.placing && editable && this.primary !== null && !has(this.points[this.primary])) {
        g.type = 'place';
        g.o0 = [this.view.ox, this.view.oy];
      } else if (e.shiftKey) {
        g.type = 'band';
      } else {
        g.type = 'pan'; g.o0 = [this.view.ox, this.view.oy];
      }
    }
    this.gesture = g;
    this.redraw();
  };

  Editor.prototype.restore = function (start) {
    var self = this;
    start.forEach(function (s) { self.points[s[0]] = [s[1], s[2]]; });
  };

  Editor.prototype.onMove = function (e) {
    var p = this.pos(e);
    var type = e.pointerType || 'mouse';
    if (this.pointers.has(e.pointerId)) this.pointers.set(e.pointerId, p);
    var g = this.gesture;
    if (g && g.type === 'pinch') {
      if (this.pointers.size < 2) return;
      var pts = Array.from(this.pointers.values());
      var d = Math.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1]) || 1;
      var m = [(pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2];
      var zoom = clamp(g.zoom0 * d / g.d0, MIN_ZOOM, MAX_ZOOM);
      var w = [g.m0[0] / g.zoom0 + g.o0[0], g.m0[1] / g.zoom0 + g.o0[1]];  // world point under the first midpoint
      this.view.zoom = zoom;
      this.view.ox = w[0] - m[0] / zoom;
      this.view.oy = w[1] - m[1] / zoom;
      this.view.fitted = true;
      this.redraw();
      return;
    }
    if (!g || !this.pointers.has(e.pointerId)) {  // hover
      if (type === 'mouse') {
        var h = this.hit(p[0], p[1], type);
        var onHandle = !this.doc || this.doc.readonly ? null : this.hitHandle(p[0], p[1], type);
        this.canvas.style.cursor = onHandle !== null ? 'nwse-resize' : h !== null ? 'grab' :
          (this.placing ? 'crosshair' : 'default');
        if (h !== this.hover) { this.hover = h; this.redraw(); }
      }
      return;
    }
    var dx = p[0] - g.p0[0], dy = p[1] - g.p0[1];
    if (!g.active) {
      if (Math.hypot(dx, dy) < (DRAG_THRESHOLD[g.pointerType] || 3)) return;
      g.active = true;
      if (g.type === 'toggle') { if (!this.sel.has(g.index)) this.sel.add(g.index); g.type = 'drag'; }
      if (g.type === 'place') g.type = 'pan';
      if (g.type === 'drag') {
        if (this.doc.readonly) { g.type = 'pan'; g.o0 = [this.view.ox, this.view.oy]; } else g.start = this.snapshot(this.selected());
      }
    }
    if (g.type === 'drag') {
      this.moveFrom(g.start, dx / this.view.zoom, dy / this.view.zoom);
      this.canvas.style.cursor = 'grabbing';
    } else if (g.type === 'pan') {
      this.view.ox = g.o0[0] - dx / this.view.zoom;
      this.view.oy = g.o0[1] - dy / this.view.zoom;
      this.view.fitted = true;
      this.canvas.style.cursor = 'move';
    } else if (g.type === 'scale') {
      var wp = this.toWorld(p[0], p[1]);
      this.scaleFrom(g.start, g.c[0], g.c[1], Math.hypot(wp[0] - g.c[0], wp[1] - g.c[1]) / g.r0);
    } else if (g.type === 'band') {
      g.p1 = p;
    }
    this.redraw();
  };

  Editor.prototype.onUp = function (e, cancelled) {
    if (!this.pointers.has(e.pointerId)) return;
    this.pointers.delete(e.pointerId);
    try { this.canvas.releasePointerCapture(e.pointerId); } catch (err) { /* not captured */ }
    var g = this.gesture;
    if (!g) return;
    if (g.type === 'pinch') {
      if (this.pointers.size === 0) this.gesture = null;
      return;
    }
    this.gesture = null;
    var p = this.pos(e);
    if (cancelled) {
      if (g.active && g.start) this.restore(g.start);
    } else if (g.type === 'drag' && g.active) {
      this.moveFrom(g.start, (p[0] - g.p0[0]) / this.view.zoom, (p[1] - g.p0[1]) / this.view.zoom);
      var idx = g.start.map(function (s) { return s[0]; });
      var self = this;
      idx.forEach(function (i) { if (self.vis[i] === OUTSIDE) self.vis[i] = VISIBLE; });
      this.commit(idx, idx.length > 1 ? 'group-move' : 'drag', performance.now());
      if (this.opts.advance && idx.length === 1) this.step(1);
    } else if (g.type === 'scale' && g.active) {
      this.commit(g.start.map(function (s) { return s[0]; }), 'group-scale', performance.now());
    } else if (g.type === 'toggle') {
      if (this.sel.has(g.index)) this.sel.delete(g.index); else this.sel.add(g.index);
      this.primary = this.sel.size ? g.index : null;
    } else if (g.type === 'place' && !g.active) {
      var w = this.toWorld(p[0], p[1]);
      var i = this.primary;
      this.points[i] = [clamp(w[0], 0, this.doc.width), clamp(w[1], 0, this.doc.height)];
      this.vis[i] = VISIBLE;
      this.placing = false;
      this.commit([i], 'place', performance.now());
    } else if (g.type === 'band' && g.p1) {
      var a = this.toWorld(Math.min(g.p0[0], g.p1[0]), Math.min(g.p0[1], g.p1[1]));
      var b = this.toWorld(Math.max(g.p0[0], g.p1[0]), Math.max(g.p0[1], g.p1[1]));
      for (var k = 0; k < this.n; k++) {
        var q = this.points[k];
        if (this.labelled(k) && q[0] >= a[0] && q[0] <= b[0] && q[1] >= a[1] && q[1] <= b[1]) this.sel.add(k);
      }
      if (this.primary === null && this.sel.size) this.primary = Math.min.apply(null, Array.from(this.sel));
    } else if (g.type === 'pan' && !g.active && !g.shift && e.button === 0) {
      this.clearSelection();  // a click on the photo never moves a point: it only clears the selection
    }
    this.canvas.style.cursor = 'default';
    this.redraw();
  };

  Editor.prototype.onWheel = function (e) {
    if (!this.doc) return;
    e.preventDefault();
    var p = this.pos(e);
    var dy = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    this.zoomAt(this.view.zoom * Math.exp(-dy * 0.0015), p[0], p[1]);
  };

  Editor.prototype.onDblClick = function (e) {
    var p = this.pos(e);
    var i = this.hit(p[0], p[1], 'mouse');
    if (i !== null) { this.selectGroup(this.groupOf[i]); this.primary = i; this.redraw(); }
  };

  // ------------------------------------------------------------------------------------------------ keyboard
  Editor.prototype.onKey = function (e, down) {
    if (!this.visible()) return;
    var t = e.target;
    if (t && t !== this.root && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' ||
        t.isContentEditable)) return;
    var inside = !!t && (t === this.root || this.root.contains(t));
    // keys reach the editor from itself, the page body or a button (not from text fields, selects, other widgets)
    if (t && !inside && t !== document.body && t.tagName !== 'BUTTON') return;
    var k = e.key;
    if (!inside && (k === 'Tab' || k === ' ' || (e.ctrlKey && (k === 'a' || k === 'A')))) return;
    if (!down) {
      if (k === 'h' && !this.opts.overlay) { this.opts.overlay = true; this.redraw(); }
      if (k === ' ') this.spaceDown = false;
      return;
    }
    if (e.altKey || e.metaKey) return;
    var ctrl = e.ctrlKey;
    var handled = true;
    var big = e.shiftKey ? 10 : 1;
    if (ctrl && (k === 'z' || k === 'Z')) { if (e.shiftKey) this.redo(); else this.undo(); }
    else if (ctrl && (k === 'y' || k === 'Y')) this.redo();
    else if (ctrl && (k === 'a' || k === 'A')) this.selectAll();
    else if (ctrl) handled = false;
    else if (k === 'ArrowLeft') this.nudge(-big, 0);
    else if (k === 'ArrowRight') this.nudge(big, 0);
    else if (k === 'ArrowUp') this.nudge(0, -big);
    else if (k === 'ArrowDown') this.nudge(0, big);
    else if (k === 'z') this.undo();
    else if (k === 'y') this.redo();
    else if (k === 'v') this.cycleVisibility();
    else if (k === '.' || (k === 'Tab' && !e.shiftKey)) this.step(1);
    else if (k === ',' || (k === 'Tab' && e.shiftKey)) this.step(-1);
    else if (k === 'g') { if (this.primary !== null) { var i = this.primary; this.selectGroup(this.groupOf[i]); this.primary = i; } }
    else if (k === '[') this.scaleSelection(1 / 1.02);
    else if (k === ']') this.scaleSelection(1.02);
    else if (k === '+' || k === '=') this.zoomBy(1.25);
    else if (k === '-' || k === '_') this.zoomBy(1 / 1.25);
    else if (k === '0') this.fitFace();
    else if (k === '9') this.fitImage();
    else if (k === '1' || k === '2' || k === '4') this.zoomTo(Number(k));
    else if (k === 'l') { this.opts.labels = !this.opts.labels; this.toggle_labels.checked = this.opts.labels; this.redraw(); }
    else if (k === 'h') { if (this.opts.overlay) { this.opts.overlay = false; this.redraw(); } }
    else if (k === ' ') this.spaceDown = true;
    else if (k === 'Escape') {
      var g = this.gesture;
      if (g && g.active && g.start) { this.restore(g.start); this.gesture = null; this.redraw(); }
      else this.clearSelection();
    }
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  };

  // ------------------------------------------------------------------------------------------------ drawing
  Editor.prototype.redraw = function (now) {
    var self = this;
    if (now) { this.draw(); return; }
    if (this.frame) return;
    this.frame = requestAnimationFrame(function () { self.frame = null; self.draw(); });
  };

  Editor.prototype.draw = function () {
    if (this.frame) { cancelAnimationFrame(this.frame); this.frame = null; }
    this.updateStatus();
    if (!this.cssSize) return;
    this.paint();
    var now = performance.now();  // edits are on screen once painted (the browser shows this frame next)
    for (var k = this.timings.length - 1; k >= 0 && this.timings[k].t_applied === null; k--) this.timings[k].t_applied = now;
  };

  Editor.prototype.paint = function () {
    var ctx = this.ctx, dpr = this.dpr, z = this.view.zoom;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#2b2b2b';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.doc || this.doc.image_id === null) return;
    if (this.image) {
      ctx.setTransform(dpr * z, 0, 0, dpr * z, -this.view.ox * z * dpr, -this.view.oy * z * dpr);
      ctx.imageSmoothingEnabled = z < 3;
      ctx.drawImage(this.image, -0.5, -0.5, this.doc.width, this.doc.height);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (!this.opts.overlay) return;
    var self = this, n = this.n;
    var scr = new Array(n);
    for (var i = 0; i < n; i++) scr[i] = this.labelled(i) ? this.toScreen(this.points[i]) : null;
    if (this.opts.skeleton) {
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      [[3.5, 'rgba(0,0,0,0.55)'], [1.5, null]].forEach(function (pass) {
        ctx.lineWidth = pass[0];
        self.edges.forEach(function (e) {
          var a = scr[e[0]], b = scr[e[1]];
          if (!a || !b) return;
          ctx.strokeStyle = pass[1] || self.colour[e[0]];
          ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
        });
      });
    }
    var h = this.handles();
    if (h && !this.doc.readonly) {
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1;
      ctx.strokeStyle = 'rgba(255,255,255,0.9)';
      ctx.strokeRect(h.box[0], h.box[1], h.box[2] - h.box[0], h.box[3] - h.box[1]);
      ctx.setLineDash([]);
      h.corners.forEach(function (c) {
        ctx.fillStyle = '#fff'; ctx.strokeStyle = '#000'; ctx.lineWidth = 1;
        ctx.fillRect(c[0] - 4.5, c[1] - 4.5, 9, 9); ctx.strokeRect(c[0] - 4.5, c[1] - 4.5, 9, 9);
      });
    }
    for (i = 0; i < n; i++) {
      var s = scr[i];
      if (!s) continue;
      var selected = this.sel.has(i), hovered = i === this.hover;
      var r = hovered ? 6 : selected ? 5 : 3.5;
      if (selected || hovered) {
        ctx.beginPath(); ctx.arc(s[0], s[1], r + 3.5, 0, 2 * Math.PI);
        ctx.lineWidth = 2; ctx.strokeStyle = hovered ? 'rgba(255,255,120,0.95)' : '#fff'; ctx.stroke();
        ctx.beginPath(); ctx.arc(s[0], s[1], r + 5, 0, 2 * Math.PI);
        ctx.lineWidth = 1; ctx.strokeStyle = '#000'; ctx.stroke();
      }
      ctx.beginPath(); ctx.arc(s[0], s[1], r, 0, 2 * Math.PI);
      if (this.vis[i] === OCCLUDED) {
        ctx.fillStyle = 'rgba(0,0,0,0.55)'; ctx.fill();
        ctx.lineWidth = 2; ctx.strokeStyle = this.colour[i]; ctx.stroke();
      } else {
        ctx.fillStyle = this.colour[i]; ctx.fill();
        ctx.lineWidth = 1.25; ctx.strokeStyle = '#000'; ctx.stroke();
      }
    }
    // an outside point that still has a position: dashed ring where it was, while it is selected
    this.sel.forEach(function (i) {
      if (self.vis[i] === OUTSIDE && has(self.points[i])) {
        var q = self.toScreen(self.points[i]);
        ctx.setLineDash([3, 3]); ctx.lineWidth = 1.5; ctx.strokeStyle = '#ddd';
        ctx.beginPath(); ctx.arc(q[0], q[1], 7, 0, 2 * Math.PI); ctx.stroke(); ctx.setLineDash([]);
      }
    });
    ctx.font = '600 11px system-ui, -apple-system, "Segoe UI", sans-serif';
    ctx.textBaseline = 'middle';
    ctx.lineJoin = 'round';
    function text(str, x, y) {
      ctx.lineWidth = 3.5; ctx.strokeStyle = 'rgba(0,0,0,0.9)'; ctx.strokeText(str, x, y);
      ctx.fillStyle = '#fff'; ctx.fillText(str, x, y);
    }
    for (i = 0; i < n; i++) {
      if (!scr[i]) continue;
      var named = i === this.hover || i === this.primary;
      if (named) text(this.label(i), scr[i][0] + 9, scr[i][1] - 10);
      else if (this.opts.labels) text(String(i), scr[i][0] + 5, scr[i][1] - 7);
    }
    var g = this.gesture;
    if (g && g.type === 'band' && g.p1) {
      ctx.setLineDash([4, 3]); ctx.lineWidth = 1; ctx.strokeStyle = '#fff';
      ctx.strokeRect(g.p0[0], g.p0[1], g.p1[0] - g.p0[0], g.p1[1] - g.p0[1]); ctx.setLineDash([]);
    }
  };

  Editor.prototype.updateStatus = function () {
    if (!this.statusSel) return;
    var sel = this.selected();
    var text;
    if (this.primary !== null && this.sel.size <= 1) {
      var p = this.points[this.primary];
      text = this.label(this.primary) + ' · ' + VIS_NAMES[this.vis[this.primary]] +
        (has(p) ? ' · (' + p[0].toFixed(1) + ', ' + p[1].toFixed(1) + ')' : ' · no position: click on the photo to place it');
    } else if (sel.length > 1) {
      text = sel.length + ' points selected: drag one to move them all, a corner to scale';
    } else {
      text = this.doc && this.doc.image_id !== null ? 'click a point to select it, drag it to move it' : '';
    }
    if (this.doc && this.doc.readonly) text = '🔒 read-only · ' + text;
    this.statusSel.textContent = text;
    this.statusZoom.textContent = this.cssSize && this.doc ? Math.round(this.view.zoom * 100) + '%' : '';
    var pending = this.pending();
    var save;
    if (this.conflict) save = '⚠️ not saved: conflict';
    else if (pending) save = 'saving…';
    else if (this.base && this.doc && this.doc.image_id !== null) save = '✓ saved · revision ' + this.base.revision;
    else save = '';
    this.statusSave.textContent = save;
    var problem = /^(⛔|⚠)/.test(this.message || '') && !this.conflict;
    this.statusMsg.textContent = problem ? this.message : '';
    this.statusMsg.hidden = !problem;
    this.root.dataset.pending = String(pending);
    this.root.dataset.revision = this.base ? String(this.base.revision) : '';
    this.root.dataset.ack = String(this.lastAck);
    this.undoBtn.disabled = !this.canUndo || !this.doc || this.doc.readonly;
    this.redoBtn.disabled = !this.canRedo || !this.doc || this.doc.readonly;
    var self = this;
    this.visButtons.forEach(function (b, k) {
      var v = [VISIBLE, OCCLUDED, OUTSIDE][k];
      b.classList.toggle('lmk-on', self.primary !== null && self.vis[self.primary] === v);
      b.disabled = !self.sel.size || !self.doc || self.doc.readonly;
    });
    this.banner.hidden = !this.conflict;
    if (this.conflict) this.bannerText.textContent = this.message || 'someone else saved this face meanwhile';
    if (this.pointSelect && document.activeElement !== this.pointSelect) {
      this.pointSelect.value = this.primary !== null && this.sel.size <= 1 ? String(this.primary) : '';
    }
  };

  // test / benchmark hooks: where a point is on the page (client CSS px), and the view transform
  Editor.prototype.clientOf = function (i) {
    var r = this.canvas.getBoundingClientRect();
    var s = this.toScreen(this.points[i]);
    return [r.left + s[0], r.top + s[1]];
  };

  window.MSMALandmarkEditor = {
    Editor: Editor,
    instances: Editor.instances,
    mount: function (element, props, watch, server) {
      return new Editor(element, props, watch, server);
    }
  };
})();
