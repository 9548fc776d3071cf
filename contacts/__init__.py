"""The registry: regions, people, chat groups, loudspeaker gateways and targeting."""

from contacts.registry import Device, Group, Person, Region, Registry, RegistryError

__all__ = ["Device", "Group", "Person", "Region", "Registry", "RegistryError"]
