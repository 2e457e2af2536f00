"""``python -m annotate init|import|prelabel|export|serve|users|report|status``."""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from pathlib import Path

from annotate.store import ROLES, STATUSES, Store, StoreError


def _store(args: argparse.Namespace) -> Store:
    # The CLI is the project owner's local tool (whoever runs it can edit the SQLite file anyway): no role checks.
    return Store(args.project_dir, enforce_roles=False)


def _user(args: argparse.Namespace) -> str:
    return getattr(args, "user", None) or os.environ.get("USER") or "cli"


def cmd_init(args: argparse.Namespace) -> int:
    store = Store(args.dir or args.project_dir, create=True, enforce_roles=False)
    project = store.create_project(args.name, args.description or "", user=_user(args))
    print(f"project {project.name!r} in {store.db_path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from annotate.importer import import_source

    store = _store(args)
    report = import_source(store, args.source, project=args.project, user=_user(args), split=args.split,
                           prelabeller=args.prelabel, outside=args.outside, update=args.update, progress=True)
    print(report.summary())
    if report.prelabel_seconds:
        print(f"pre-labelling took {report.prelabel_seconds:.1f} s "
              f"({report.prelabel_seconds / max(report.images_prelabelled, 1) * 1000:.0f} ms per image)")
    if not report.added and not report.duplicates:
        why = "every image was unreadable" if report.unreadable else "no image found"
        print(f"error: nothing imported from {args.source} ({why})", file=sys.stderr)
        return 2
    return 0 if not report.errors and not report.refused else 2


def cmd_prelabel(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from annotate.labeling import _ImageCache
    from annotate.prelabel import get_prelabeller, prelabel_image

    store = _store(args)
    prelabeller = get_prelabeller(args.prelabeller)
    if prelabeller is None:
        print("nothing to do: --prelabeller none")
        return 0
    images = [r for r in store.list_images(args.project, order="id") if not store.revisions(r.id)]
    cache = _ImageCache(size=1)
    faces = 0
    for rec in tqdm(images, desc=f"prelabel ({prelabeller.name})", unit="img"):
        image, scale = cache.get(store, rec.id)
        faces += prelabel_image(store, rec.id, image, prelabeller,
                                None if scale == 1.0 else (lambda p, s=scale: (p + 0.5) / s - 0.5))
    print(f"pre-labelled {faces} face(s) on {len(images)} image(s) without annotations")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from annotate.exporter import export_project, push_to_hub

    store = _store(args)
    statuses = parse_statuses(args.status)
    try:
        report = export_project(store, args.out, args.format, project=args.project, statuses=statuses,
                                copy_images=not args.no_images)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: the export to {args.out} failed: {exc.strerror or exc}{where}; no partial file was left "
              "under a final name", file=sys.stderr)
        return 2
    print(report.summary())
    if args.push_to_hub:
        if args.format != "hf":
            print("--push-to-hub needs --format hf", file=sys.stderr)
            return 2
        print(f"pushed to {push_to_hub(args.out, args.push_to_hub, private=not args.public)}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "list":
        for name, role in store.list_users():
            print(f"{name}\t{role}")
        if not store.list_users():
            print("no users: the web UI is read-only unless started with --open-access")
        return 0
    if not args.name:
        print("a user name is needed", file=sys.stderr)
        return 2
    if args.action == "add":
        password = args.password or os.environ.get("ANNOTATE_PASSWORD")
        password = password or getpass.getpass(f"password for {args.name}: ")
        store.add_user(args.name, password, args.role)
        print(f"user {args.name} ({args.role}) saved")
    elif args.action == "role":
        store.set_role(args.name, args.role)
        print(f"user {args.name} is now {args.role}")
    elif args.action == "remove":
        store.remove_user(args.name)
        print(f"user {args.name} removed")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from annotate.quality import quality_figure, quality_report

    store = _store(args)
    report = quality_report(store, args.project, include_import=args.include_import)
    print(report.summary())
    if args.out:
        quality_figure(report).write_html(args.out, include_plotlyjs=True)
        print(f"plot written to {args.out}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    p = store.progress(args.project)
    print(f"{p['finished']} of {p['total']} done; " + ", ".join(f"{s} {p[s]}" for s in STATUSES))
    for user, s in sorted(store.labeler_stats(args.project).items()):
        print(f"  {user}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from annotate.ui import create_app, launch_kwargs

    store = open_store_for_ui(args.project_dir, open_access=args.open_access)
    if not store.list_users():
        if args.open_access:
            print("warning: --open-access and no users: anyone who can reach the server can edit", file=sys.stderr)
        else:
            print("no users defined: the UI is read-only. Add labelers with `python -m annotate users add NAME "
                  "--role labeler`, or pass --open-access to let anyone edit without a login", file=sys.stderr)
    demo = create_app(store, args.project, prelabeller=args.prelabeller)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs(store))
    return 0


def open_store_for_ui(path: str | os.PathLike, *, open_access: bool = False) -> Store:
    """The store as the web UI uses it: with users, their logins and roles; without users, read-only unless the
    owner chose ``open_access`` (anyone may edit, recorded under the name they type)."""
    return Store(path, enforce_roles=None if open_access else True)


def parse_statuses(text: str | None) -> list[str] | None:
    """``--status``: comma-separated statuses, ``all`` for every image; default: done + approved only."""
    from annotate.exporter import DEFAULT_EXPORT_STATUSES

    if text is None:
        return list(DEFAULT_EXPORT_STATUSES)
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    if wanted == ["all"]:
        return None
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise ValueError(f"unknown status {', '.join(unknown) or text!r}; use 'all' or some of {', '.join(STATUSES)}")
    return wanted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m annotate", description="68-point landmark annotation toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--project-dir", "-d", default=os.environ.get("ANNOTATE_DIR", "annotation_project"),
                       help="project folder holding annotate.sqlite and images/ (env ANNOTATE_DIR)")
        p.add_argument("--project", "-p", default=None, help="project name (default: the only one)")
        return p

    p = add("init", "create a project folder and database: python -m annotate init DIR")
    p.add_argument("dir", nargs="?", default=None, help="project folder (default: --project-dir)")
    p.add_argument("--name", default="default")
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_init)

    p = add("import", "import photos (+ their .pts / dlib XML / COCO labels) from a folder or HF dataset")
    p.add_argument("source", help="a folder, a datasets.save_to_disk folder, or a Hugging Face Hub dataset name")
    p.add_argument("--prelabel", default="none",
                   help="pre-label images without labels: none | detector[:mediapipe|dlib|auto[+dlib]] | "
                        "reconstruction | module:function")
    p.add_argument("--split", default=None, help="split for all images (default: from label file names, else train)")
    p.add_argument("--outside", choices=("reject", "flag"), default="reject",
                   help="labelled points outside the image: reject the face, or flag the points 'outside'")
    p.add_argument("--update", action="store_true", help="re-import labels of images already annotated (new revision)")
    p.add_argument("--user", default=None)
    p.set_defaults(func=cmd_import)

    p = add("prelabel", "pre-label every image that has no annotation yet")
    p.add_argument("--prelabeller", default="detector", help="detector[:name] | reconstruction | module:function")
    p.set_defaults(func=cmd_prelabel)

    p = add("export", "export annotations")
    p.add_argument("--format", "-f", choices=("pts", "dlib", "coco", "hf"), required=True)
    p.add_argument("--out", "-o", required=True)
    p.add_argument("--status", default=None,
                   help="comma-separated statuses to export, or 'all' (default: done,approved - never unreviewed "
                        f"pre-labels or rejected faces by accident); statuses: {', '.join(STATUSES)}")
    p.add_argument("--no-images", action="store_true", help="do not copy the photos next to the labels")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the hf export (needs a token)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: make the dataset public")
    p.set_defaults(func=cmd_export)

    p = add("users", "manage logins and roles")
    p.add_argument("action", choices=("list", "add", "role", "remove"))
    p.add_argument("name", nargs="?")
    p.add_argument("--role", choices=ROLES, default="labeler")
    p.add_argument("--password", default=None, help="default: $ANNOTATE_PASSWORD or prompt")
    p.set_defaults(func=cmd_users)

    p = add("report", "quality report: inter-labeler NME (and pre-label error)")
    p.add_argument("--out", default=None, help="write the plot as a stand-alone HTML file")
    p.add_argument("--include-import", action="store_true", help="treat imported labels as one more labeler")
    p.set_defaults(func=cmd_report)

    p = add("status", "progress and per-labeler counts")
    p.set_defaults(func=cmd_status)

    p = add("serve", "run the annotation web UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--share", action="store_true")
    p.add_argument("--prelabeller", default="detector", help="used by the UI's 'pre-label' button")
    p.add_argument("--open-access", action="store_true",
                   help="with no users in the store, let anyone who reaches the server edit (default: read-only)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "project_dir", None):
        args.project_dir = str(Path(args.project_dir))
    try:
        return args.func(args)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"error: the project database failed: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, missing files: a plain line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
