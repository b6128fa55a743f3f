"""Static facts the simulated instance is made of: activity types, lead fields, error messages.

The standard type ids and names are Marketo's (Activity Types in
https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/lead-database/activities);
their attribute lists follow the attributes named there, filled out with plausible ones where
the source lists none. One custom type (100001) is included, because real instances have them
and they are not flagged as custom in ``types.json``. There are more than ten types besides 13
and 37, so a tap must split them into several groups of at most ten.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActivityTypeDef:
    id: int
    name: str
    description: str
    primary: tuple[str, str]  # (name, dataType)
    attributes: tuple[tuple[str, str], ...]  # ((name, dataType), ...)
    api_name: str | None = None

    def as_json(self) -> dict[str, object]:
        primary: dict[str, object] = {"name": self.primary[0], "dataType": self.primary[1]}
        item: dict[str, object] = {"id": self.id, "name": self.name}
        if self.api_name:
            item["apiName"] = self.api_name
            primary["apiName"] = _camel(self.primary[0])
        item["description"] = self.description
        item["primaryAttribute"] = primary
        item["attributes"] = [
            {"name": n, "dataType": t, **({"apiName": _camel(n)} if self.api_name else {})}
            for n, t in self.attributes
        ]
        return item


def _camel(name: str) -> str:
    words = name.replace("(", "").replace(")", "").split()
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


STR, INT, BOOL, DAY, TEXT = "string", "integer", "boolean", "date", "text"
_WEB = (
    ("Client IP Address", STR),
    ("Query Parameters", STR),
    ("Referrer URL", STR),
    ("User Agent", STR),
)
_MAIL = (("Campaign Run ID", INT), ("Step ID", INT), ("Choice Number", INT))
_BOUNCE = (
    ("Campaign Run ID", INT),
    ("Category", STR),
    ("Details", STR),
    ("Email", STR),
    ("Subcategory", STR),
    ("Step ID", INT),
)
_OPEN = (
    ("Campaign Run ID", INT),
    ("Platform", STR),
    ("Device", STR),
    ("User Agent", STR),
    ("Is Mobile Device", BOOL),
    ("Step ID", INT),
    ("Choice Number", INT),
)

ACTIVITY_TYPES: tuple[ActivityTypeDef, ...] = (
    ActivityTypeDef(
        1,
        "Visit Webpage",
        "User visits a web page",
        ("Webpage ID", INT),
        (*_WEB, ("Webpage URL", STR)),
    ),
    ActivityTypeDef(
        2,
        "Fill Out Form",
        "User fills out and submits a form on a web page",
        ("Webform ID", INT),
        (*_WEB, ("Form Fields", TEXT), ("Webpage ID", INT)),
    ),
    ActivityTypeDef(
        3,
        "Click Link",
        "User clicks a link on a page",
        ("Link ID", INT),
        (*_WEB, ("Webpage URL", STR)),
    ),
    ActivityTypeDef(6, "Send Email", "Send a Marketo email to a lead", ("Mailing ID", INT), _MAIL),
    ActivityTypeDef(
        7, "Email Delivered", "Marketo email is delivered to a lead", ("Mailing ID", INT), _MAIL
    ),
    ActivityTypeDef(8, "Email Bounced", "Marketo email bounces hard", ("Mailing ID", INT), _BOUNCE),
    ActivityTypeDef(
        9,
        "Unsubscribe Email",
        "Lead unsubscribes from emails",
        ("Mailing ID", INT),
        (*_WEB, ("Campaign Run ID", INT), ("Webform ID", INT)),
    ),
    ActivityTypeDef(10, "Open Email", "Lead opens a Marketo email", ("Mailing ID", INT), _OPEN),
    ActivityTypeDef(
        11,
        "Click Email",
        "Lead clicks a link in a Marketo email",
        ("Mailing ID", INT),
        (("Link", STR), *_OPEN),
    ),
    ActivityTypeDef(
        12,
        "New Lead",
        "A new lead is created",
        ("Lead ID", INT),
        (("Created Date", DAY), ("Source Type", STR), ("Form Name", STR)),
    ),
    ActivityTypeDef(
        13,
        "Change Data Value",
        "A lead field value changes",
        ("Attribute Name", STR),
        (
            ("New Value", STR),
            ("Old Value", STR),
            ("Reason", STR),
            ("Source", STR),
            ("Lead ID", INT),
        ),
    ),
    ActivityTypeDef(
        19,
        "Sync Lead to SFDC",
        "Lead is pushed to the CRM",
        ("Lead ID", INT),
        (("Assign To", STR), ("Campaign", STR)),
    ),
    ActivityTypeDef(
        21,
        "Convert Lead",
        "Lead is converted in the CRM",
        ("Lead ID", INT),
        (("Converted Status", STR), ("Opportunity Name", STR)),
    ),
    ActivityTypeDef(
        22,
        "Change Score",
        "Lead score changes",
        ("Score Name", STR),
        (("Change Value", STR), ("New Value", INT), ("Old Value", INT), ("Reason", STR)),
    ),
    ActivityTypeDef(
        23,
        "Change Owner",
        "Lead owner changes",
        ("Owner ID", INT),
        (("New Owner", STR), ("Old Owner", STR)),
    ),
    ActivityTypeDef(
        24, "Add to List", "Lead is added to a static list", ("List ID", INT), (("Source", STR),)
    ),
    ActivityTypeDef(
        25,
        "Remove from List",
        "Lead is removed from a static list",
        ("List ID", INT),
        (("Source", STR),),
    ),
    ActivityTypeDef(
        27, "Email Bounced Soft", "Marketo email bounces soft", ("Mailing ID", INT), _BOUNCE
    ),
    ActivityTypeDef(
        32,
        "Merge Leads",
        "Two leads are merged",
        ("Lead ID", INT),
        (("Merge IDs", STR), ("Master Updated", BOOL), ("Merge Source", STR)),
    ),
    ActivityTypeDef(
        34,
        "Add to Opportunity",
        "Lead is added to an opportunity",
        ("Opportunity ID", INT),
        (("Role", STR), ("Is Primary", BOOL)),
    ),
    ActivityTypeDef(37, "Delete Lead", "A lead is deleted", ("Lead ID", INT), ()),
    ActivityTypeDef(
        46,
        "Interesting Moment",
        "An interesting moment is logged",
        ("Description", STR),
        (("Type", STR), ("Source", STR), ("Date", DAY)),
    ),
    ActivityTypeDef(
        47,
        "Request Campaign",
        "Lead is requested into a campaign",
        ("Campaign ID", INT),
        (("Source", STR),),
    ),
    ActivityTypeDef(
        104,
        "Change Status in Progression",
        "Program status changes",
        ("Program ID", INT),
        (
            ("Old Status", STR),
            ("New Status", STR),
            ("Acquired By", BOOL),
            ("Success", BOOL),
            ("Reason", STR),
            ("Program Member ID", INT),
        ),
    ),
    ActivityTypeDef(
        110,
        "Call Webhook",
        "A webhook is called",
        ("Webhook ID", INT),
        (("Response", STR), ("Error Type", INT)),
    ),
    ActivityTypeDef(
        113,
        "Add to Nurture",
        "Lead is added to a nurture program",
        ("Program ID", INT),
        (("Track ID", INT),),
    ),
    ActivityTypeDef(
        114,
        "Change Nurture Track",
        "Nurture track changes",
        ("Program ID", INT),
        (("Previous Track ID", INT), ("New Track ID", INT)),
    ),
    ActivityTypeDef(
        115,
        "Change Nurture Cadence",
        "Nurture cadence changes",
        ("Program ID", INT),
        (("New Nurture Cadence", STR),),
    ),
    ActivityTypeDef(
        123,
        "Change Program Member Data",
        "Program member data changes",
        ("Program ID", INT),
        (("Attribute Name", STR), ("Old Value", STR), ("New Value", STR)),
    ),
    ActivityTypeDef(
        145,
        "Push Lead to Marketo",
        "Lead is pushed in through the API",
        ("Lead ID", INT),
        (("Source", STR), ("API Method Name", STR), ("Request Id", STR)),
    ),
    ActivityTypeDef(
        100001,
        "Attend Webinar",
        "Custom activity: lead attends a webinar",
        ("Webinar Name", STR),
        (("Minutes Attended", INT), ("Platform", STR)),
        api_name="attendWebinar_c",
    ),
)

TYPES_BY_ID: dict[int, ActivityTypeDef] = {t.id: t for t in ACTIVITY_TYPES}

#: Types the tap's ``activities`` stream covers by default: everything but lead changes (13,
#: served by leadchanges.json) and deletions (37, served by deletedleads.json).
DEFAULT_ACTIVITY_TYPE_IDS: tuple[int, ...] = tuple(
    t.id for t in ACTIVITY_TYPES if t.id not in (13, 37)
)

NEW_LEAD, CHANGE_DATA_VALUE, DELETE_LEAD, SEND_EMAIL = 12, 13, 37, 6
LEAD_CHANGE_TYPES = frozenset({NEW_LEAD, CHANGE_DATA_VALUE})

#: Lead fields that change (type 13): (field id, REST name).
LEAD_FIELDS: tuple[tuple[int, str], ...] = (
    (48, "email"),
    (49, "firstName"),
    (50, "lastName"),
    (51, "company"),
    (52, "leadStatus"),
    (53, "leadScore"),
    (54, "title"),
    (55, "phone"),
    (56, "city"),
    (57, "country"),
)
LEAD_FIELD_NAMES = frozenset(name for _, name in LEAD_FIELDS)

#: Every lead field a ``fields=`` parameter may name without a 1006 (the changing ones plus a
#: few that exist but never change in the simulated world).
KNOWN_LEAD_FIELDS = LEAD_FIELD_NAMES | {"id", "createdAt", "updatedAt", "middleName", "website"}

#: How ``/rest/v1/leads/describe.json`` describes the lead fields the simulator knows:
#: (field id, REST name, display name, dataType). The simulator has no lead records; the
#: description exists because other extractors read it while they discover their catalog.
LEAD_DESCRIPTION: tuple[tuple[int, str, str, str], ...] = (
    (1, "id", "Id", "integer"),
    (2, "createdAt", "Created At", "datetime"),
    (3, "updatedAt", "Updated At", "datetime"),
    (48, "email", "Email Address", "email"),
    (49, "firstName", "First Name", "string"),
    (50, "lastName", "Last Name", "string"),
    (51, "company", "Company Name", "string"),
    (52, "leadStatus", "Lead Status", "string"),
    (53, "leadScore", "Lead Score", "integer"),
    (54, "title", "Job Title", "string"),
    (55, "phone", "Phone Number", "phone"),
    (56, "city", "City", "string"),
    (57, "country", "Country", "string"),
    (58, "middleName", "Middle Name", "string"),
    (59, "website", "Website", "url"),
)

FIRST_NAMES = (
    "Ada",
    "Bram",
    "Chloe",
    "Dario",
    "Esme",
    "Femi",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kiri",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tove",
    "Uma",
    "Viktor",
    "Wen",
    "Xavi",
    "Yara",
    "Zane",
)
LAST_NAMES = (
    "Abara",
    "Berg",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Umar",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhou",
)
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka")
TITLES = ("Engineer", "Manager", "Director", "Analyst", "VP Marketing", "CTO")
STATUSES = ("Open", "Contacted", "Qualified", "Nurture", "Disqualified")
CITIES = ("Lisbon", "Oslo", "Austin", "Osaka", "Lagos", "Lyon", "Denver", "Pune")
COUNTRIES = ("PT", "NO", "US", "JP", "NG", "FR", "US", "IN")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/123.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
PAGES = ("index", "pricing", "blog/late-commits", "webinars", "contact", "docs/api", "careers")

#: Marketo error codes and the messages the simulator answers with. Messages are short
#: paraphrases: clients must match on the code (the docs themselves vary the text).
ERROR_MESSAGES: dict[str, str] = {
    "601": "Access token invalid",
    "602": "Access token expired",
    "603": "Access denied",
    "604": "Request timed out",
    "605": "HTTP method not supported",
    "606": "Max rate limit '{calls}' exceeded with in '{window}' secs",
    "607": "Max daily quota '{quota}' exceeded",
    "608": "API temporarily unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid content type",
    "614": "Invalid subscription",
    "615": "Concurrent access limit reached",
    "616": "Invalid subscription type",
    "701": "{name} cannot be blank",
    "702": "No data found for given search scope",
    "703": "The requested feature is not enabled",
    "704": "Invalid date format",
    "713": "Transient error",
    "1001": "Invalid value '{value}'. Required of type '{type}'",
    "1002": "Missing value for required parameter '{name}'",
    "1003": "Invalid data",
    "1006": "Field '{name}' not found",
    "1035": "Unsupported filter type for target subscription: {name}",
}


def error_message(code: str, **values: object) -> str:
    template = ERROR_MESSAGES.get(code, "Error")
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        return template.split("'{")[0].strip() or template
