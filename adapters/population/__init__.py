"""The deterministic synthetic population every agency store is filled from."""

from adapters.population.draw import Draw
from adapters.population.world import (
    CAPACITY,
    REFERENCE_DATE,
    Address,
    Company,
    Household,
    IdentityDocument,
    Institution,
    InstitutionKind,
    LandPlot,
    MaritalStatus,
    Marriage,
    Person,
    Property,
    PropertyKind,
    Role,
    Vehicle,
    World,
)

__all__ = [
    "CAPACITY",
    "REFERENCE_DATE",
    "Address",
    "Company",
    "Draw",
    "Household",
    "IdentityDocument",
    "Institution",
    "InstitutionKind",
    "LandPlot",
    "MaritalStatus",
    "Marriage",
    "Person",
    "Property",
    "PropertyKind",
    "Role",
    "Vehicle",
    "World",
]
