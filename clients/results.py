"""GroundResult: the server's GroundResponse plus helpers to draw and export it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boxguard.guards.types import Detection
from boxguard.guards.wire import GroundResponse
from pydantic import PrivateAttr

from .images import ImageInput, load_image

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["GroundResult", "SUPERVISION_HINT"]

SUPERVISION_HINT = 'supervision is not installed: pip install "boxguard[supervision]"'


class GroundResult(GroundResponse):
    """A verdict from ``POST /ground``: verified boxes or an abstention with its reasons.

    Example:
        >>> r = GroundResult.model_validate({
        ...     "id": "r1", "status": "accepted", "model": "demo",
        ...     "image": {"width": 100, "height": 80},
        ...     "detections": [{"bbox": [10, 10, 50, 40], "label": "cat", "confidence": 0.9}],
        ... })
        >>> r.accepted, r.top.label, r.boxes
        (True, 'cat', [[10.0, 10.0, 50.0, 40.0]])
        >>> r.to_coco(image_id=7)[0]["bbox"]
        [10.0, 10.0, 40.0, 30.0]
    """

    _request_id: str | None = PrivateAttr(default=None)

    @property
    def abstained(self) -> bool:
        """True when the server declined to answer; see ``reasons`` and ``candidates``."""
        return self.status == "abstained"

    @property
    def request_id(self) -> str:
        """The X-Request-ID of the HTTP exchange (falls back to the response id)."""
        return self._request_id or self.id

    @property
    def boxes(self) -> list[list[float]]:
        """The verified boxes [x1, y1, x2, y2] in original-image pixels (empty if abstained)."""
        dets = self.detections if self.accepted else []
        return [list(d.bbox) for d in dets if d.bbox is not None]

    @property
    def points(self) -> list[list[float]]:
        """The verified points [x, y] in original-image pixels of a point request (``output=
        "point"``; empty if abstained).

        Example:
            >>> GroundResult.model_validate({"id": "r", "status": "accepted", "model": "m",
            ...     "image": {"width": 9, "height": 9}, "detections": [{"point": [3, 4]}]}).points
            [[3.0, 4.0]]
        """
        dets = self.detections if self.accepted else []
        return [list(d.point) for d in dets if d.point is not None]

    @property
    def top(self) -> Detection | None:
        """The first verified detection, or None."""
        return self.detections[0] if self.accepted and self.detections else None

    @property
    def top_candidate(self) -> Detection | None:
        """The model's first box regardless of the verdict (detection, else candidate)."""
        if self.detections:
            return self.detections[0]
        return self.candidates[0] if self.candidates else None

    def draw(
        self, image: ImageInput, *, expression: str | None = None, width: int | None = None
    ) -> Image.Image:
        """Return a copy of `image` with boxes, labels and confidences drawn.

        An abstention is drawn distinctly: a red banner with the reasons and the rejected
        candidates as dashed red boxes. Boxes are rescaled if `image` is not at the original size.

        Example:
            >>> result.draw("street.jpg").save("street-boxes.png")  # doctest: +SKIP
        """
        from .draw import draw_result

        return draw_result(self, load_image(image), expression=expression, width=width)

    def to_coco(self, image_id: int | str, *, category_id: int = 1) -> list[dict[str, Any]]:
        """COCO detection results ``{image_id, category_id, bbox: [x, y, w, h], score}``.

        An abstention yields an empty list. Detections without a confidence get score 1.0. A
        point is a one-keypoint result ``{..., keypoints: [x, y, 2], num_keypoints: 1}``.

        Example:
            >>> result.to_coco(42)  # doctest: +SKIP
            [{'image_id': 42, 'category_id': 1, 'bbox': [10.0, 10.0, 40.0, 30.0], 'score': 0.9}]
        """
        rows: list[dict[str, Any]] = []
        if not self.accepted:
            return rows
        for det in self.detections:
            row: dict[str, Any] = {
                "image_id": image_id,
                "category_id": category_id,
                "score": 1.0 if det.confidence is None else float(det.confidence),
            }
            if det.point is not None:
                row.update(keypoints=[float(det.point[0]), float(det.point[1]), 2], num_keypoints=1)
            elif det.bbox is not None:
                x1, y1, x2, y2 = (float(v) for v in det.bbox)
                row["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            if det.label is not None:
                row["label"] = det.label
            rows.append(row)
        return rows

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` of the verified boxes (empty when abstained).

        Labels are in ``detections.data["class_name"]``. Needs the optional extra:
        ``pip install "boxguard[supervision]"``.

        Example:
            >>> import supervision as sv  # doctest: +SKIP
            >>> sv.BoxAnnotator().annotate(scene, result.to_supervision())  # doctest: +SKIP
        """
        try:
            import supervision as sv
        except ImportError as exc:
            raise ImportError(SUPERVISION_HINT) from exc
        import numpy as np

        dets = self.detections if self.accepted else []
        if any(d.bbox is None for d in dets):
            raise ValueError("a point result has no boxes for supervision: use result.points")
        if not dets:
            return sv.Detections.empty()
        return sv.Detections(
            xyxy=np.array([d.bbox for d in dets], dtype=np.float32),
            confidence=np.array(
                [np.nan if d.confidence is None else d.confidence for d in dets], dtype=np.float32
            ),
            class_id=np.zeros(len(dets), dtype=int),
            data={"class_name": np.array([d.label or "" for d in dets])},
        )
