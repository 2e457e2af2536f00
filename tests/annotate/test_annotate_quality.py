from __future__ import annotations

import numpy as np
import pytest

from annotate.quality import quality_figure, quality_report
from annotate.store import Store


def test_inter_labeler_nme(filled_store: Store) -> None:
    s = filled_store
    img = s.list_images(order="id")[0]
    ann = s.get_annotation(img.id)
    a = s.save(img.id, ann.points, ann.visibility, base_revision=ann.revision, user="alice")
    shifted = ann.points + np.array([2.0, 0.0])
    s.save(img.id, shifted, ann.visibility, base_revision=a.revision, user="bob")
    rep = quality_report(s)
    assert len(rep.pairs) == 1
    pair = rep.pairs[0]
    iod = np.linalg.norm(ann.points[45] - ann.points[36])
    assert {pair.user_a, pair.user_b} == {"alice", "bob"}
    assert pair.nme == pytest.approx(2.0 / iod)
    assert np.nanmax(rep.per_point()) == pytest.approx(2.0 / iod)
    assert "alice vs bob" in rep.summary()
    fig = quality_figure(rep)
    assert len(fig.data) >= 2
    with_import = quality_report(s, include_import=True)
    assert len(with_import.pairs) == 3  # owner (import), alice, bob
