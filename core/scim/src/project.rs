//! `attributes` / `excludedAttributes` projection of returned resources (RFC 7644 §3.4.2.5,
//! §3.9) by each attribute's `returned` characteristic (RFC 7643 §7).
//!
//! - `schemas` and attributes returned "always" (`id`) are always kept; "never" ones always
//!   dropped (sub-attributes too);
//! - "default" ones (incl. `meta`, returned by default) are kept unless excluded, or unless
//!   `attributes` is given and names neither them nor one of their sub-attributes;
//! - "request" ones only when `attributes` names them;
//! - names are case-insensitive, may be fully qualified (`urn:…:User:userName`,
//!   `urn:…:enterprise:2.0:User:department`), name a sub-attribute (`name.givenName`,
//!   `emails.value`: then only those sub-attributes of the attribute are returned, in every
//!   value of a multi-valued one) or a whole extension by its URN; names of attributes the
//!   resource type does not define are ignored. An extension object left empty is dropped.

use serde_json::{Map, Value};

use crate::filter::{self, parse_attr_path};
use crate::schema::{AttrType, Attribute, ResourceType, Returned};
use crate::{Result, ScimError, ScimType};

/// Most names one `attributes` or `excludedAttributes` parameter may list.
pub const MAX_ATTRIBUTE_NAMES: usize = 100;

/// Parses the comma-separated `attributes` / `excludedAttributes` query parameter: names are
/// trimmed, empty ones skipped. More than [`MAX_ATTRIBUTE_NAMES`] names is 400 `invalidValue`;
/// a name that is not an attribute path is 400 `invalidPath`.
pub fn parse_attribute_list(s: &str) -> Result<Vec<String>> {
    let names: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() > MAX_ATTRIBUTE_NAMES {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!(
                "{} attribute names; at most {MAX_ATTRIBUTE_NAMES} are accepted",
                names.len()
            ),
        ));
    }
    names
        .into_iter()
        .map(|n| parse_attr_path(n).map(|_| n.to_owned()))
        .collect()
}

/// One resolved name of an `attributes` / `excludedAttributes` list.
#[derive(Debug, Clone, Copy)]
struct Sel {
    /// The extension holding the attribute; `None` for the resource itself.
    ext: Option<&'static str>,
    attr: &'static Attribute,
    sub: Option<&'static Attribute>,
}

/// Resolves names; a schema URN stands for each attribute of that schema.
fn selectors(names: &[String], rt: &ResourceType) -> Result<Vec<Sel>> {
    let mut out = Vec::new();
    for n in names {
        let p = parse_attr_path(n)?;
        if let Some(ext) = p.schema(rt) {
            let schema = match ext {
                Some(u) => rt.extension(u),
                None => Some(rt.schema),
            };
            for attr in schema.map_or(&[][..], |s| s.attributes) {
                out.push(Sel {
                    ext,
                    attr,
                    sub: None,
                });
            }
        } else if let Some(r) = filter::resolve(rt, &p) {
            out.push(Sel {
                ext: r.ext,
                attr: r.attr,
                sub: r.sub,
            });
        }
    }
    Ok(out)
}

/// What the names say about one attribute.
struct Named {
    whole: bool,
    subs: Vec<&'static Attribute>,
}

fn named(sels: &[Sel], ext: Option<&'static str>, attr: &'static Attribute) -> Named {
    let mut n = Named {
        whole: false,
        subs: Vec::new(),
    };
    for s in sels
        .iter()
        .filter(|s| s.ext == ext && std::ptr::eq(s.attr, attr))
    {
        match s.sub {
            None => n.whole = true,
            Some(sub) => n.subs.push(sub),
        }
    }
    n
}

#[derive(Clone, Copy)]
enum Mode<'a> {
    /// `attributes`: only what is named (plus "always").
    Only(&'a [Sel]),
    /// `excludedAttributes` (possibly empty): the default set less what is named.
    Except(&'a [Sel]),
}

/// Returns `resource` as `attributes` (if non-empty) or `excludedAttributes` ask
/// (RFC 7644 §3.9); with both empty, the default set (no "never" or "request" attributes).
/// Both non-empty is 400 `invalidValue` (they are mutually exclusive); a name that is not an
/// attribute path is 400 `invalidPath`.
pub fn project(
    resource: &Value,
    attributes: &[String],
    excluded: &[String],
    rt: &ResourceType,
) -> Result<Value> {
    if !attributes.is_empty() && !excluded.is_empty() {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "'attributes' and 'excludedAttributes' are mutually exclusive",
        ));
    }
    let only = selectors(attributes, rt)?;
    let except = selectors(excluded, rt)?;
    let mode = if attributes.is_empty() {
        Mode::Except(&except)
    } else {
        Mode::Only(&only)
    };
    let Some(obj) = resource.as_object() else {
        return Ok(resource.clone());
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("schemas") {
            out.insert(k.clone(), v.clone());
            continue;
        }
        if let Some(ext) = rt.extension(k) {
            let Some(members) = v.as_object() else {
                continue;
            };
            let mut inner = Map::new();
            for (mk, mv) in members {
                if let Some(pv) = project_attr(ext.attribute(mk), Some(ext.id), mv, mode) {
                    inner.insert(mk.clone(), pv);
                }
            }
            if !inner.is_empty() {
                out.insert(k.clone(), Value::Object(inner));
            }
            continue;
        }
        if let Some(pv) = project_attr(rt.attribute(None, k), None, v, mode) {
            out.insert(k.clone(), pv);
        }
    }
    Ok(Value::Object(out))
}

/// One attribute's projected value, or `None` to leave it out.
fn project_attr(
    def: Option<&'static Attribute>,
    ext: Option<&'static str>,
    v: &Value,
    mode: Mode<'_>,
) -> Option<Value> {
    let Some(def) = def else {
        // Not in the schema: like a "default" attribute that no name can select.
        return match mode {
            Mode::Only(_) => None,
            Mode::Except(_) => Some(v.clone()),
        };
    };
    let default_sub = |s: &Attribute| matches!(s.returned, Returned::Always | Returned::Default);
    match def.returned {
        Returned::Never => None,
        Returned::Always => keep_subs(def, v, &|s| default_sub(s), true),
        Returned::Default | Returned::Request => match mode {
            Mode::Only(sels) => {
                let n = named(sels, ext, def);
                let asked = |s: &Attribute| {
                    s.returned != Returned::Never && n.subs.iter().any(|x| std::ptr::eq(*x, s))
                };
                if n.whole {
                    keep_subs(def, v, &|s| default_sub(s) || asked(s), true)
                } else if !n.subs.is_empty() {
                    keep_subs(
                        def,
                        v,
                        &|s| s.returned == Returned::Always || asked(s),
                        false,
                    )
                } else {
                    None
                }
            }
            Mode::Except(sels) => {
                if def.returned == Returned::Request {
                    return None;
                }
                let n = named(sels, ext, def);
                if n.whole {
                    return None;
                }
                keep_subs(
                    def,
                    v,
                    &|s| {
                        s.returned == Returned::Always
                            || (s.returned == Returned::Default
                                && !n.subs.iter().any(|x| std::ptr::eq(*x, s)))
                    },
                    true,
                )
            }
        },
    }
}

/// `v` with only the sub-attributes `keep` accepts (members the schema does not define are
/// kept if `keep_unknown`); values left empty are dropped, and so is an attribute left empty.
fn keep_subs(
    def: &'static Attribute,
    v: &Value,
    keep: &dyn Fn(&Attribute) -> bool,
    keep_unknown: bool,
) -> Option<Value> {
    if def.kind != AttrType::Complex {
        return Some(v.clone());
    }
    let one = |x: &Value| -> Option<Value> {
        let Some(o) = x.as_object() else {
            return Some(x.clone());
        };
        let kept: Map<String, Value> = o
            .iter()
            .filter(|(k, _)| def.sub(k).map_or(keep_unknown, keep))
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match v {
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(one).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => one(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{
        ENTERPRISE_USER_URN, GROUP_TYPE, Mutability, Schema, USER_TYPE, Uniqueness,
    };
    use serde_json::json;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": [CORE, ENTERPRISE_USER_URN],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "701984",
            "userName": "bjensen@example.com",
            "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            ENTERPRISE_USER_URN: {"employeeNumber": "701984", "department": "Tour Operations",
                "manager": {"value": "26118915", "displayName": "John Smith"}},
            "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z", "version": "W/\"3694e05e9dff591\""}
        })
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn only(list: &[&str]) -> Value {
        project(&user(), &names(list), &[], &USER_TYPE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn except(list: &[&str]) -> Value {
        project(&user(), &[], &names(list), &USER_TYPE).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rfc_3_9_example_attributes_user_name() {
        assert_eq!(
            only(&["userName"]),
            json!({"schemas": [CORE, ENTERPRISE_USER_URN], "id": "2819c223-7f76-453a-919d-413861904646", "userName": "bjensen@example.com"})
        );
    }

    #[test]
    fn default_set_is_everything_here() {
        assert_eq!(project(&user(), &[], &[], &USER_TYPE).ok(), Some(user()));
    }

    #[test]
    fn always_attributes_survive_exclusion() {
        let v = except(&["id", "schemas", "userName", "meta"]);
        assert_eq!(v["id"], user()["id"]);
        assert_eq!(v["schemas"], user()["schemas"]);
        assert!(v.get("userName").is_none());
        assert!(v.get("meta").is_none());
        assert_eq!(v["displayName"], "Babs Jensen");
    }

    #[test]
    fn meta_is_returned_by_default_only() {
        assert!(only(&["userName"]).get("meta").is_none());
        assert_eq!(only(&["meta"])["meta"], user()["meta"]);
        assert_eq!(
            only(&["meta.lastModified"])["meta"],
            json!({"lastModified": "2011-05-13T04:42:34Z"})
        );
        assert_eq!(
            except(&["meta.version"])["meta"]
                .as_object()
                .map(|m| m.contains_key("version")),
            Some(false)
        );
    }

    #[test]
    fn sub_attributes() {
        let v = only(&["name.givenName", "emails.value"]);
        assert_eq!(v["name"], json!({"givenName": "Barbara"}));
        assert_eq!(
            v["emails"],
            json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
        );
        assert!(v.get("userName").is_none());
        let v = only(&["name", "name.givenName"]);
        assert_eq!(v["name"], user()["name"], "the whole attribute wins");
        let v = except(&["name.formatted", "emails.primary"]);
        assert_eq!(
            v["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        assert_eq!(
            v["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        // values left without anything asked for disappear
        let v = only(&["emails.display"]);
        assert!(v.get("emails").is_none());
    }

    #[test]
    fn fully_qualified_and_case_insensitive_names() {
        let v = only(&[
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "USERNAME",
        ]);
        assert_eq!(v["userName"], "bjensen@example.com");
        let v = only(&[&format!("{ENTERPRISE_USER_URN}:department")]);
        assert_eq!(
            v[ENTERPRISE_USER_URN],
            json!({"department": "Tour Operations"})
        );
        let v = only(&[&format!("{ENTERPRISE_USER_URN}:manager.value")]);
        assert_eq!(
            v[ENTERPRISE_USER_URN],
            json!({"manager": {"value": "26118915"}})
        );
        let v = only(&["Name.GivenName"]);
        assert_eq!(v["name"], json!({"givenName": "Barbara"}));
        // a whole extension by URN
        let v = only(&[ENTERPRISE_USER_URN]);
        assert_eq!(v[ENTERPRISE_USER_URN], user()[ENTERPRISE_USER_URN]);
        assert!(v.get("userName").is_none());
        let v = except(&[ENTERPRISE_USER_URN]);
        assert!(v.get(ENTERPRISE_USER_URN).is_none());
        assert_eq!(v["userName"], "bjensen@example.com");
        // the core schema by URN: every core attribute
        let v = only(&[CORE]);
        assert_eq!(v["userName"], "bjensen@example.com");
        assert!(v.get(ENTERPRISE_USER_URN).is_none());
        assert!(v.get("meta").is_none());
        // unqualified extension attribute (lenient)
        let v = only(&["employeeNumber"]);
        assert_eq!(v[ENTERPRISE_USER_URN], json!({"employeeNumber": "701984"}));
    }

    #[test]
    fn excluded_extension_members_and_empty_extension_objects() {
        let v = except(&[
            &format!("{ENTERPRISE_USER_URN}:employeeNumber"),
            &format!("{ENTERPRISE_USER_URN}:department"),
            &format!("{ENTERPRISE_USER_URN}:manager"),
        ]);
        assert!(
            v.get(ENTERPRISE_USER_URN).is_none(),
            "emptied extension object dropped"
        );
        assert!(only(&["userName"]).get(ENTERPRISE_USER_URN).is_none());
    }

    #[test]
    fn unknown_names_are_ignored() {
        assert_eq!(only(&["nickName", "userName"]), only(&["userName"]));
        assert_eq!(except(&["nickName"]), user());
        let v = only(&["nickName"]);
        assert_eq!(
            v,
            json!({"schemas": [CORE, ENTERPRISE_USER_URN], "id": "2819c223-7f76-453a-919d-413861904646"})
        );
    }

    #[test]
    fn never_and_request_attributes() {
        static ATTRS: [Attribute; 4] = [
            Attribute {
                returned: Returned::Never,
                mutability: Mutability::WriteOnly,
                ..Attribute::string("password", "")
            },
            Attribute {
                returned: Returned::Request,
                ..Attribute::string("secretQuestion", "")
            },
            Attribute {
                kind: AttrType::Complex,
                sub_attributes: &SUBS,
                ..Attribute::string("box", "")
            },
            Attribute {
                returned: Returned::Always,
                uniqueness: Uniqueness::Server,
                ..Attribute::string("code", "")
            },
        ];
        static SUBS: [Attribute; 3] = [
            Attribute::string("open", ""),
            Attribute {
                returned: Returned::Never,
                ..Attribute::string("pin", "")
            },
            Attribute {
                returned: Returned::Request,
                ..Attribute::string("note", "")
            },
        ];
        static S: Schema = Schema {
            id: "urn:test:Thing",
            name: "Thing",
            description: "",
            attributes: &ATTRS,
        };
        static RT: ResourceType = ResourceType {
            name: "Thing",
            endpoint: "/Things",
            description: "",
            schema: &S,
            extensions: &[],
        };
        let r = json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c", "password": "p", "secretQuestion": "q",
            "box": {"open": "o", "pin": "1234", "note": "n"}});
        let p = |a: &[&str], e: &[&str]| {
            project(&r, &names(a), &names(e), &RT).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            p(&[], &[]),
            json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c", "box": {"open": "o"}})
        );
        assert_eq!(
            p(&["password", "secretQuestion"], &[]),
            json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c", "secretQuestion": "q"})
        );
        assert_eq!(
            p(&["box.pin", "box.note"], &[]),
            json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c", "box": {"note": "n"}})
        );
        assert_eq!(
            p(&["box"], &[]),
            json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c", "box": {"open": "o"}})
        );
        assert_eq!(
            p(&[], &["code", "box"]),
            json!({"schemas": ["urn:test:Thing"], "id": "1", "code": "c"})
        );
        assert_eq!(p(&[], &["secretQuestion"]), p(&[], &[]));
    }

    #[test]
    fn groups() {
        let g = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Tour Guides",
            "members": [{"value": "u1", "display": "A", "$ref": "https://x/Users/u1"}], "meta": {"resourceType": "Group"}});
        let v =
            project(&g, &[], &names(&["members"]), &GROUP_TYPE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Tour Guides", "meta": {"resourceType": "Group"}})
        );
        let v = project(
            &g,
            &names(&["members.value", "members.$ref"]),
            &[],
            &GROUP_TYPE,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v["members"],
            json!([{"value": "u1", "$ref": "https://x/Users/u1"}])
        );
        assert!(v.get("displayName").is_none());
    }

    #[test]
    fn errors() {
        let e = project(
            &user(),
            &names(&["userName"]),
            &names(&["name"]),
            &USER_TYPE,
        )
        .expect_err("both");
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let e = project(&user(), &names(&["a.b.c"]), &[], &USER_TYPE).expect_err("bad name");
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let e = project(
            &user(),
            &[],
            &names(&["emails[type eq \"work\"]"]),
            &USER_TYPE,
        )
        .expect_err("filter");
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn attribute_lists() {
        assert_eq!(
            parse_attribute_list("userName, name.givenName ,emails").ok(),
            Some(names(&["userName", "name.givenName", "emails"]))
        );
        assert_eq!(parse_attribute_list("").ok(), Some(vec![]));
        assert_eq!(
            parse_attribute_list(" , userName,, ").ok(),
            Some(names(&["userName"]))
        );
        let full =
            format!("{ENTERPRISE_USER_URN}:manager.value,{ENTERPRISE_USER_URN},members.$ref");
        assert_eq!(parse_attribute_list(&full).map(|v| v.len()).ok(), Some(3));
        let e = parse_attribute_list("userName,a b").expect_err("bad");
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        assert!(e.detail.contains("a b"), "{}", e.detail);
        let many = vec!["userName"; MAX_ATTRIBUTE_NAMES].join(",");
        assert_eq!(
            parse_attribute_list(&many).map(|v| v.len()).ok(),
            Some(MAX_ATTRIBUTE_NAMES)
        );
        let too_many = vec!["userName"; MAX_ATTRIBUTE_NAMES + 1].join(",");
        let e = parse_attribute_list(&too_many).expect_err("too many");
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(
            e.detail.contains(&MAX_ATTRIBUTE_NAMES.to_string()),
            "{}",
            e.detail
        );
    }
}
