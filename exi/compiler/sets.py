"""The schema sets the codec is generated for.

Adding a protocol (ISO 15118-2, DIN 70121) means adding a SchemaSet here and its XSDs to the schemas folder
given to `make grammars SCHEMAS=...`; the compiler and the runtime need no new code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SchemaSet:
    name: str  # short name used by the API and the CLI
    namespace: str  # namespace of the message set (what SupportedAppProtocol and the vectors call it)
    xsd: str  # main XSD, relative to the schemas folder
    fragment: bool = True  # also build the fragment grammar (signature inputs)
    aliases: tuple[str, ...] = field(default_factory=tuple)


ISO20 = "urn:iso:std:iso:15118:-20:"

SCHEMA_SETS: tuple[SchemaSet, ...] = (
    SchemaSet("app", "urn:iso:15118:2:2010:AppProtocol", "iso15118-20/V2G_CI_AppProtocol.xsd", fragment=False,
              aliases=("sap", "appprotocol")),
    SchemaSet("cm", ISO20 + "CommonMessages", "iso15118-20/V2G_CI_CommonMessages.xsd", aliases=("common",)),
    SchemaSet("dc", ISO20 + "DC", "iso15118-20/V2G_CI_DC.xsd"),
    SchemaSet("ac", ISO20 + "AC", "iso15118-20/V2G_CI_AC.xsd"),
    SchemaSet("wpt", ISO20 + "WPT", "iso15118-20/V2G_CI_WPT.xsd"),
    SchemaSet("acdp", ISO20 + "ACDP", "iso15118-20/V2G_CI_ACDP.xsd"),
    SchemaSet("ac-der-iec", ISO20 + "AC-DER-IEC", "iso15118-20-amd1/V2G_CI_AC_DER_IEC.xsd"),
    SchemaSet("ac-der-sae", ISO20 + "AC-DER-SAE", "iso15118-20-amd1/V2G_CI_AC_DER_SAE.xsd"),
    SchemaSet("xmldsig", "http://www.w3.org/2000/09/xmldsig#", "iso15118-20/xmldsig-core-schema.xsd",
              aliases=("ds",)),
)

# Python module (under exi.generated) and XML prefix per namespace.
NAMESPACE_MODULES: dict[str, tuple[str, str]] = {
    "urn:iso:15118:2:2010:AppProtocol": ("app", "app"),
    ISO20 + "CommonTypes": ("ct", "ct"),
    ISO20 + "CommonMessages": ("cm", "cm"),
    ISO20 + "DC": ("dc", "dc"),
    ISO20 + "AC": ("ac", "ac"),
    ISO20 + "WPT": ("wpt", "wpt"),
    ISO20 + "ACDP": ("acdp", "acdp"),
    ISO20 + "AC-DER-IEC": ("ac_der_iec", "deriec"),
    ISO20 + "AC-DER-SAE": ("ac_der_sae", "dersae"),
    "http://www.w3.org/2000/09/xmldsig#": ("xmldsig", "ds"),
}

# Hand-written behaviour mixed into generated classes (by XSD type local name).
MIXINS: dict[str, str] = {
    "RationalNumberType": "exi.rational.RationalNumberMixin",
}
