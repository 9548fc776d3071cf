"""The registry: regions, people and targeting."""

from contacts.registry import Person, Region, Registry, RegistryError

__all__ = ["Person", "Region", "Registry", "RegistryError"]
