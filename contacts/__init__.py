"""The registry: regions, people, chat groups and targeting."""

from contacts.registry import Group, Person, Region, Registry, RegistryError

__all__ = ["Group", "Person", "Region", "Registry", "RegistryError"]
