"""Regression: a vehicle owner who turns 18 on the world's reference date.

`World._vehicle` drew the model year from [year of the 18th birthday, last year]:
for a person born on 1 January 2008 that range was empty and building the world's
vehicles crashed (ZeroDivisionError in `Draw.below(0)`), so any registry that lists
vehicles failed to populate. Kept forever.
"""

from __future__ import annotations

import datetime as dt

from adapters.population import REFERENCE_DATE, World


def test_an_owner_turning_18_on_the_reference_date_has_a_vehicle() -> None:
    world = World(seed=2, persons=4280)
    owner = world.person(4242)
    assert owner.birth_date == dt.date(2008, 1, 1) and owner.vehicles == 1
    (vehicle,) = world.vehicles_of(owner)
    assert vehicle.year == REFERENCE_DATE.year - 1
    # Registered on the day the owner became an adult, never before.
    assert vehicle.registered == REFERENCE_DATE
