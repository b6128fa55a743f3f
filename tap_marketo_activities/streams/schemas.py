"""The activity record's schema pieces every activity stream and per-type table shares."""

from __future__ import annotations

from singer_sdk import typing as th

ATTRIBUTE_TYPE = th.ObjectType(
    th.Property("name", th.StringType, required=True),
    th.Property("dataType", th.StringType),
    th.Property("apiName", th.StringType),
)

ACTIVITY_PROPERTIES: list[th.Property] = [
    th.Property("marketoGUID", th.StringType, required=True, description="Primary key"),
    th.Property("id", th.IntegerType, description="Legacy id; absent on some instances"),
    th.Property("leadId", th.IntegerType),
    th.Property(
        "activityDate",
        th.DateTimeType,
        required=True,
        description="When the activity happened, RFC 3339 UTC",
    ),
    th.Property("activityTypeId", th.IntegerType, required=True),
    th.Property("activityTypeName", th.StringType),
    th.Property("campaignId", th.IntegerType),
    th.Property("primaryAttributeValueId", th.IntegerType),
    th.Property("primaryAttributeValue", th.StringType),
    th.Property(
        "attributes",
        th.ObjectType(additional_properties=True),
        description="Attribute values keyed by attribute name, with their JSON types",
    ),
]


#: The unified record's fields every per-type table keeps, under the same names.
COMMON_FIELDS = tuple(
    str(p.name) for p in ACTIVITY_PROPERTIES if p.name not in {"attributes", "activityTypeName"}
)
