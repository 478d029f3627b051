"""Tenancy's use cases, one transaction each (state change, audit record, outbox events and
idempotency record together). The API validates and converts; these decide."""

from mevaas_tenancy.commands.access import AccessCommands, IssuedToken
from mevaas_tenancy.commands.tenants import BrandingInput, TenantChanges, TenantCommands

__all__ = ["AccessCommands", "BrandingInput", "IssuedToken", "TenantChanges", "TenantCommands"]
