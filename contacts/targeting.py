"""Who an alert reaches: its regions and everything below them, and everyone and every gateway
located inside its CAP polygons or circles; then only the roles it names and, for people who
follow particular hazards, only if it is one of theirs.

Points are tested all at once against each shape (shapely's vectorised predicates over arrays
of the registry's located recipients, built once per registry), so a polygon over a district
of 100,000 people is one call, not 100,000. A point on a polygon's edge is inside: a warning
errs toward reaching someone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon

EARTH_RADIUS_KM = 6371.0088
POINT = r"-?\d+(\.\d+)?,-?\d+(\.\d+)?"
POLYGON = rf"^{POINT}(\s+{POINT}){{3,}}$"  # CAP: four or more points, the first repeated last


@dataclass(frozen=True)
class Target:
    codes: tuple[str, ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()  # (lat, lon) rings, as CAP gives them
    circles: tuple[tuple[float, float, float], ...] = ()  # lat, lon, radius in km
    roles: frozenset[str] | None = None  # None: everyone
    hazards: frozenset[str] = field(default_factory=frozenset)  # the alert's categories and event

    @property
    def has_shapes(self) -> bool:
        return bool(self.polygons or self.circles)

    def merged(self, other: Target) -> Target:
        return Target(tuple(dict.fromkeys(self.codes + other.codes)), self.polygons + other.polygons,
                      self.circles + other.circles, self.roles, self.hazards | other.hazards)


def parse_polygon(text: str) -> tuple[tuple[float, float], ...]:
    """CAP's "lat,lon lat,lon ..." (the first point repeated last)."""
    return tuple((float(lat), float(lon)) for lat, lon in (p.split(",") for p in text.split()))


def parse_circle(text: str) -> tuple[float, float, float]:
    """CAP's "lat,lon radius" (kilometres)."""
    point, radius = text.split()
    lat, lon = point.split(",")
    return float(lat), float(lon), float(radius)


@dataclass
class Located:
    """The recipients that have a location, as arrays for testing many points at once."""

    items: list  # people and devices, in registry order
    lat: np.ndarray
    lon: np.ndarray

    @classmethod
    def of(cls, items: list) -> Located:
        items = [i for i in items if i.lat is not None and i.lon is not None]
        return cls(items, np.array([i.lat for i in items], dtype=float), np.array([i.lon for i in items], dtype=float))

    def inside(self, target: Target) -> np.ndarray:
        """A mask of the located recipients inside any of the target's shapes."""
        mask = np.zeros(len(self.items), dtype=bool)
        if not self.items:
            return mask
        for ring in target.polygons:
            polygon = Polygon([(lon, lat) for lat, lon in ring])
            if not polygon.is_valid:
                polygon = shapely.make_valid(polygon)
            shapely.prepare(polygon)
            mask |= shapely.intersects_xy(polygon, self.lon, self.lat)  # the edge counts as inside
        for lat, lon, radius_km in target.circles:
            mask |= haversine_km(lat, lon, self.lat, self.lon) <= radius_km
        return mask


def haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(1.0, a)))
