//! The SCIM schemas lockgate serves (RFC 7643 §4, §8.7): User with the enterprise extension,
//! Group, and the common attributes; each attribute's type, mutability, returnability and
//! case exactness, which the filter, PATCH and projection code read.

use serde_json::{Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SERVICE_PROVIDER_CONFIG_URN: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
            AttrType::Binary => "binary",
        }
    }
}

/// Whether and how a client may write an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// How a value must be unique (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, Copy)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
    pub description: &'static str,
}

impl Attribute {
    /// A single-valued, optional, read-write, case-insensitive string returned by default.
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: AttrType::String,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description,
        }
    }

    const fn of(mut self, kind: AttrType) -> Self {
        self.kind = kind;
        self
    }

    const fn complex(mut self, sub: &'static [Attribute]) -> Self {
        self.kind = AttrType::Complex;
        self.sub_attributes = sub;
        self
    }

    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }

    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }

    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }

    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }

    const fn references(mut self, types: &'static [&'static str]) -> Self {
        self.kind = AttrType::Reference;
        self.reference_types = types;
        self
    }

    /// The sub-attribute named `name` (case-insensitive, RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&'static Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The attribute as its schema resource describes it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability.as_str(),
            "returned": self.returned.as_str(),
        });
        if matches!(
            self.kind,
            AttrType::String | AttrType::Reference | AttrType::Binary
        ) {
            v["caseExact"] = json!(self.case_exact);
            v["uniqueness"] = json!(self.uniqueness.as_str());
        }
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub_attributes.is_empty() {
            v["subAttributes"] =
                Value::Array(self.sub_attributes.iter().map(|a| a.to_json()).collect());
        }
        v
    }
}

/// A schema: its URN and attributes.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

impl Schema {
    /// The attribute named `name` (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The schema as `GET /Schemas/{id}` returns it; `base` is the absolute `/scim/v2` URL.
    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": [SCHEMA_URN],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{}", self.id),
            },
        })
    }
}

/// A resource type: endpoint, core schema and extensions (RFC 7643 §6).
#[derive(Debug, Clone, Copy)]
pub struct ResourceType {
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static Schema,
    /// Extension schemas and whether a resource must carry them.
    pub extensions: &'static [(&'static Schema, bool)],
}

impl ResourceType {
    /// Every schema URN a resource of this type may name in `schemas`.
    pub fn schema_urns(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.schema.id).chain(self.extensions.iter().map(|(s, _)| s.id))
    }

    /// The extension schema with this URN (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&'static Schema> {
        self.extensions
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// The definition of a top-level attribute: a common one (`id`, `externalId`, `meta`), one
    /// of the core schema, or, with `urn`, one of that extension's.
    pub fn attribute(&self, urn: Option<&str>, name: &str) -> Option<&'static Attribute> {
        match urn {
            Some(u) if u.eq_ignore_ascii_case(self.schema.id) => self
                .schema
                .attribute(name)
                .or_else(|| common_attribute(name)),
            Some(u) => self.extension(u)?.attribute(name),
            None => common_attribute(name).or_else(|| self.schema.attribute(name)),
        }
    }

    /// The resource type as `GET /ResourceTypes/{name}` returns it.
    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": self.extensions.iter().map(|(s, required)| json!({
                "schema": s.id,
                "required": required,
            })).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{}", self.name),
            },
        })
    }
}

/// The common attributes every resource has (RFC 7643 §3.1); not part of any schema.
pub static COMMON: [Attribute; 3] = [
    Attribute::string(
        "id",
        "Identifier the service provider assigned; never reassigned.",
    )
    .case_exact()
    .mutability(Mutability::ReadOnly)
    .returned(Returned::Always)
    .unique(),
    Attribute::string("externalId", "Identifier the provisioning client assigned.").case_exact(),
    Attribute::string("meta", "Resource metadata.")
        .complex(&META)
        .mutability(Mutability::ReadOnly),
];

static META: [Attribute; 5] = [
    Attribute::string("resourceType", "The resource type's name.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
    Attribute::string("created", "When the resource was created.")
        .of(AttrType::DateTime)
        .mutability(Mutability::ReadOnly),
    Attribute::string("lastModified", "When the resource was last changed.")
        .of(AttrType::DateTime)
        .mutability(Mutability::ReadOnly),
    Attribute::string("location", "The resource's URI.")
        .references(&["uri"])
        .case_exact()
        .mutability(Mutability::ReadOnly),
    Attribute::string("version", "The resource's entity tag.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
];

/// A common attribute by name (case-insensitive).
pub fn common_attribute(name: &str) -> Option<&'static Attribute> {
    COMMON.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

static NAME: [Attribute; 6] = [
    Attribute::string("formatted", "The full name, formatted for display."),
    Attribute::string("familyName", "Family name: the employee's surname."),
    Attribute::string("givenName", "Given name: the employee's first name."),
    Attribute::string("middleName", "Middle name(s)."),
    Attribute::string(
        "honorificPrefix",
        "Honorific prefix: the employee's title (e.g. Dr.).",
    ),
    Attribute::string("honorificSuffix", "Honorific suffix."),
];

static EMAILS: [Attribute; 4] = [
    Attribute::string("value", "E-mail address (RFC 5321)."),
    Attribute::string("display", "Display value."),
    Attribute::string("type", "Label: work, home or other.").canonical(&["work", "home", "other"]),
    Attribute::string("primary", "The primary address (at most one).").of(AttrType::Boolean),
];

static PHONES: [Attribute; 4] = [
    Attribute::string("value", "Phone number."),
    Attribute::string("display", "Display value."),
    Attribute::string("type", "Label: work, mobile, home, fax, pager or other.")
        .canonical(&["work", "mobile", "home", "fax", "pager", "other"]),
    Attribute::string("primary", "The primary number (at most one).").of(AttrType::Boolean),
];

static ADDRESSES: [Attribute; 8] = [
    Attribute::string("formatted", "The full address, formatted for display."),
    Attribute::string("streetAddress", "Street: the employee's street."),
    Attribute::string("locality", "City: the employee's city."),
    Attribute::string("region", "State or region: the employee's state."),
    Attribute::string("postalCode", "Postcode: the employee's postcode."),
    Attribute::string("country", "Country: the employee's country."),
    Attribute::string("type", "Label: work, home or other.").canonical(&["work", "home", "other"]),
    Attribute::string("primary", "The primary address (at most one).").of(AttrType::Boolean),
];

static USER_ATTRIBUTES: [Attribute; 10] = [
    Attribute::string("userName", "Unique login name; the client's key for the user.")
        .required()
        .unique(),
    Attribute::string("name", "The user's name: given and family name become the employee's first name and surname.")
        .complex(&NAME),
    Attribute::string("displayName", "Name for display."),
    Attribute::string("title", "Job title: the employee's job."),
    Attribute::string("preferredLanguage", "Preferred language: the employee's language."),
    Attribute::string("locale", "Locale for formatting."),
    Attribute::string("active", "False deactivates the employee (or marks them deleted, as the system's deletion setting says).")
        .of(AttrType::Boolean),
    Attribute::string("emails", "E-mail addresses; the primary (else the first) is the employee's e-mail.")
        .complex(&EMAILS)
        .multi(),
    Attribute::string("phoneNumbers", "Phone numbers; 'mobile' is the employee's mobile phone, the primary other one their phone.")
        .complex(&PHONES)
        .multi(),
    Attribute::string("addresses", "Postal addresses; the primary (else the first) is the employee's address.")
        .complex(&ADDRESSES)
        .multi(),
];

pub static USER: Schema = Schema {
    id: USER_URN,
    name: "User",
    description: "A user account: a lockgate employee.",
    attributes: &USER_ATTRIBUTES,
};

static MANAGER: [Attribute; 3] = [
    Attribute::string("value", "The manager's id.").case_exact(),
    Attribute::string("$ref", "The manager's URI.")
        .references(&["User"])
        .case_exact(),
    Attribute::string("displayName", "The manager's display name.")
        .mutability(Mutability::ReadOnly),
];

static ENTERPRISE_ATTRIBUTES: [Attribute; 6] = [
    Attribute::string(
        "employeeNumber",
        "Personnel number: the employee's identifier (at most 50 characters).",
    ),
    Attribute::string("costCenter", "Cost centre (kept, not mapped)."),
    Attribute::string("organization", "Organisation: the employee's organisation."),
    Attribute::string("division", "Division (kept, not mapped)."),
    Attribute::string("department", "Department: the employee's department."),
    Attribute::string("manager", "The user's manager (kept, not mapped).").complex(&MANAGER),
];

pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_URN,
    name: "EnterpriseUser",
    description: "Enterprise user extension.",
    attributes: &ENTERPRISE_ATTRIBUTES,
};

static MEMBERS: [Attribute; 4] = [
    Attribute::string("value", "The member's id.")
        .case_exact()
        .mutability(Mutability::Immutable),
    Attribute::string("$ref", "The member's URI.")
        .references(&["User"])
        .case_exact()
        .mutability(Mutability::Immutable),
    Attribute::string("display", "The member's display name."),
    Attribute::string("type", "The member's resource type.")
        .canonical(&["User"])
        .mutability(Mutability::Immutable),
];

static GROUP_ATTRIBUTES: [Attribute; 2] = [
    Attribute::string(
        "displayName",
        "The group's name: the tag its members carry in lockgate.",
    )
    .required()
    .unique(),
    Attribute::string("members", "The group's members (users only).")
        .complex(&MEMBERS)
        .multi(),
];

pub static GROUP: Schema = Schema {
    id: GROUP_URN,
    name: "Group",
    description: "A group of users: a lockgate tag on the employees it holds.",
    attributes: &GROUP_ATTRIBUTES,
};

pub static USER_TYPE: ResourceType = ResourceType {
    name: "User",
    endpoint: "/Users",
    description: "Users: lockgate employees.",
    schema: &USER,
    extensions: &[(&ENTERPRISE_USER, false)],
};

pub static GROUP_TYPE: ResourceType = ResourceType {
    name: "Group",
    endpoint: "/Groups",
    description: "Groups: tags on lockgate employees.",
    schema: &GROUP,
    extensions: &[],
};

/// Every resource type served.
pub static RESOURCE_TYPES: [&ResourceType; 2] = [&USER_TYPE, &GROUP_TYPE];

/// Every schema served.
pub static SCHEMAS: [&Schema; 3] = [&USER, &ENTERPRISE_USER, &GROUP];
