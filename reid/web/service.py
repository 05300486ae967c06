"""What the web app runs on: its settings, and the loaded pieces every part shares (the model,
optional detector and screen, the sites, the app's database and folders)."""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reid.errors import ReIDError
from reid.web.alerts import Sites, read_site_table
from reid.web.db import WebDB
from reid.web.uploads import Limits

if TYPE_CHECKING:
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery


@dataclass
class ServeSettings:
    """Everything ``reid serve`` is told; library users build one and call ``create_app``."""

    gallery_dir: Path
    model: Path
    data_dir: Path | None = None  # the app's database and uploads (default: <gallery>/web)
    workers: int = 1  # identification threads (0: queue only, nothing identified)
    batch: int = 16  # photos a worker identifies at once
    device: str = "auto"
    detector: Path | None = None  # a head detector: each photo is cut to its best head
    screen: Path | None = None  # a category run (native / hybrid) for the screen and alerts
    scorer: str | None = None  # as `reid match --scorer` (None: auto)
    sites: Path | None = None  # site,latitude,longitude[,catchment]
    alert_km: float = 5.0  # a confirmed sighting farther than this from every earlier one
    hybrid_category: str = "hybrid"
    hybrid_level: float = 0.5
    limits: Limits = field(default_factory=Limits)
    secure_cookies: bool = False  # set behind HTTPS, so that cookies never travel in clear

    def __post_init__(self) -> None:
        self.gallery_dir = Path(self.gallery_dir)
        self.model = Path(self.model)
        self.data_dir = Path(self.data_dir) if self.data_dir else self.gallery_dir / "web"
        if self.workers < 0 or self.batch < 1:
            raise ReIDError("--workers must be 0 or more and the batch at least 1.")
        if self.alert_km <= 0:
            raise ReIDError(f"--alert-km must be positive, not {self.alert_km}.")


class Service:
    """The loaded pieces, built once at start-up (a missing model or gallery fails here, with
    one sentence, before the server listens)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        if not (settings.gallery_dir / "gallery.sqlite").is_file():
            raise ReIDError(
                f"{settings.gallery_dir} is not a gallery: enroll photos into it with "
                "`reid enroll` first."
            )
        self.sites: Sites = read_site_table(settings.sites)
        self.db = WebDB(settings.data_dir / "web.sqlite")
        self.uploads_dir = settings.data_dir / "uploads"
        self.results_dir = settings.data_dir / "results"
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.uploads_dir.glob(".*-*"):  # .tmp-/.check- files a crash left behind
            stale.unlink(missing_ok=True)
        self.secret = _secret(settings.data_dir / "secret.key")
        self.review_lock = threading.Lock()  # one review action at a time: no double enroll
        self.picture_lock = threading.Lock()  # Grad-CAM hooks and pyplot are not thread-safe
        self._explainer = None
        from reid.features.embedder import Embedder

        self.embedder: Embedder = Embedder.from_run(settings.model, settings.device)
        with self.open_gallery():
            pass  # a broken gallery, or one enrolled with another model, fails before serving
        self.detector = None
        if settings.detector is not None:
            from reid.detect.detector import load_detector

            self.detector = load_detector(settings.detector, device=settings.device)
        self.screener: Embedder | None = None
        if settings.screen is not None:
            self.screener = Embedder.from_run(settings.screen, settings.device)

    def open_gallery(self) -> Gallery:
        """A fresh handle on the gallery (one per thread: handles are not shared), checked
        against the model."""
        from reid.pipeline import open_gallery

        return open_gallery(self.settings.gallery_dir, self.embedder, create=False)

    def upload_path(self, stored_name: str) -> Path:
        return self.uploads_dir / stored_name

    def explainer(self):
        """Grad-CAM on the eager model, built on first use (reviewers may never ask)."""
        if self._explainer is None:
            from reid.explain.gradcam import Explainer

            self._explainer = Explainer(self.settings.model, device=self.settings.device)
        return self._explainer


def _secret(path: Path) -> bytes:
    """The app's signing key, made once (0600) so that tokens outlive a restart."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return path.read_bytes()


__all__ = ["ServeSettings", "Service"]
