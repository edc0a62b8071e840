//! SCIM PATCH (RFC 7644 §3.5.2): applies a request's `Operations` to a JSON resource, checked
//! against the resource type's schema (types, mutability, required attributes) and atomic: on
//! any error the resource is left as it was.
//!
//! Behaviour beyond the RFC's letter, for the clients lockgate serves:
//! - op names are case-insensitive (Entra ID sends `Replace`, `Add`, `Remove`);
//! - booleans given as strings `"True"`/`"False"` become JSON booleans;
//! - a complex attribute with a `value` sub-attribute given as a bare string (Entra ID's
//!   `manager`) becomes `{"value": ...}`;
//! - `remove` with path `members` (any multi-valued attribute) and a `value` array removes the
//!   listed values, matched by `value` (Entra ID's way of removing group members);
//! - `add` with a value-filter path that matches nothing, whose filter is `eq` comparisons
//!   joined by `and` (`emails[type eq "work"].value`), adds a new value carrying those
//!   sub-attributes (Entra ID sets a first work e-mail or address this way); `replace` then
//!   fails with `noTarget` as the RFC says;
//! - keys of a `value` object without `path` may themselves be paths (`name.givenName`,
//!   fully qualified extension attributes) or an extension URN holding an object;
//! - a readOnly attribute written with the value it already has (Okta sends `id` back) is
//!   ignored; any other write of it is `mutability`.
//!
//! Errors (all 400): malformed body or operation → `invalidSyntax`; more than
//! [`MAX_PATCH_OPERATIONS`] operations, a value of the wrong type, a missing `value`, or more
//! than one `primary: true` → `invalidValue`; an unknown attribute or malformed path →
//! `invalidPath`; a bad value filter in a path → `invalidPath` (syntax) or `invalidFilter`
//! (operator against the schema); `remove` without path, or `replace` whose value filter
//! matches nothing → `noTarget`; writing a readOnly attribute, changing an immutable one, or
//! removing a required or readOnly one → `mutability`. Details name the operation (1-based)
//! and the attribute.

use scim_v2::filter as ast;
use serde_json::{Map, Value};

use crate::filter::{
    self, AttrPath, Resolved, SCHEMAS_ATTRIBUTE, as_bool, get_ci, is_present, key_ci, parse_time,
    str_eq,
};
use crate::schema::{AttrType, Attribute, Mutability, ResourceType};
use crate::{MAX_PATCH_OPERATIONS, Result, ScimError, ScimType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Replace => "replace",
            Kind::Remove => "remove",
        }
    }
}

/// A parsed `path`.
enum Target {
    Attr(AttrPath),
    Value {
        attr: AttrPath,
        filter: ast::ValFilter,
        sub: Option<String>,
    },
}

fn bad(t: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::bad(t, detail)
}

fn mutability(detail: impl Into<String>) -> ScimError {
    bad(ScimType::Mutability, detail)
}

fn invalid_value(detail: impl Into<String>) -> ScimError {
    bad(ScimType::InvalidValue, detail)
}

/// Applies the `Operations` array of a PATCH request body (RFC 7644 §3.5.2) to `resource`, in
/// order; all or nothing. See the module documentation for the error of each case.
pub fn apply(resource: &mut Value, operations: &Value, rt: &ResourceType) -> Result<()> {
    let ops = operations.as_array().ok_or_else(|| {
        bad(
            ScimType::InvalidSyntax,
            "'Operations' must be an array of operations",
        )
    })?;
    if ops.is_empty() {
        return Err(bad(ScimType::InvalidSyntax, "'Operations' is empty"));
    }
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(invalid_value(format!(
            "{} operations; at most {MAX_PATCH_OPERATIONS} are accepted in one request",
            ops.len()
        )));
    }
    if !resource.is_object() {
        return Err(ScimError::status(
            500,
            "the resource to patch is not a JSON object",
        ));
    }
    let mut work = resource.clone();
    let mut ctx = Ctx {
        rt,
        touched: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        ctx.operation(&mut work, op).map_err(|e| ScimError {
            detail: format!("operation {}: {}", i + 1, e.detail),
            ..e
        })?;
    }
    ctx.check_primaries(&work)?;
    check_required(resource, &work, rt)?;
    *resource = work;
    Ok(())
}

struct Ctx<'a> {
    rt: &'a ResourceType,
    /// Attributes written, for the final `primary` check.
    touched: Vec<Resolved>,
}

impl Ctx<'_> {
    fn operation(&mut self, res: &mut Value, op: &Value) -> Result<()> {
        let obj = op.as_object().ok_or_else(|| {
            bad(
                ScimType::InvalidSyntax,
                "an operation must be a JSON object",
            )
        })?;
        let name = get_ci(obj, "op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(ScimType::InvalidSyntax, "missing 'op'"))?;
        let kind = match name.to_ascii_lowercase().as_str() {
            "add" => Kind::Add,
            "replace" => Kind::Replace,
            "remove" => Kind::Remove,
            _ => {
                return Err(bad(
                    ScimType::InvalidSyntax,
                    format!("unknown op '{name}': add, replace or remove"),
                ));
            }
        };
        let value = get_ci(obj, "value");
        match get_ci(obj, "path") {
            None | Some(Value::Null) => match kind {
                Kind::Remove => Err(bad(ScimType::NoTarget, "'remove' needs a 'path'")),
                _ => self.without_path(res, kind, value),
            },
            Some(Value::String(p)) => {
                let target = parse_target(p)?;
                self.at_path(res, kind, target, value)
            }
            Some(_) => Err(bad(ScimType::InvalidPath, "'path' must be a string")),
        }
    }

    /// `add` / `replace` without `path`: each member of the `value` object is a target.
    fn without_path(&mut self, res: &mut Value, kind: Kind, value: Option<&Value>) -> Result<()> {
        let Some(Value::Object(members)) = value else {
            return Err(invalid_value(format!(
                "'{}' without 'path' needs an object of attributes as 'value'",
                kind.name()
            )));
        };
        for (k, v) in members {
            let target = parse_target(k)?;
            self.at_path(res, kind, target, Some(v))?;
        }
        Ok(())
    }

    fn at_path(
        &mut self,
        res: &mut Value,
        kind: Kind,
        target: Target,
        value: Option<&Value>,
    ) -> Result<()> {
        let value = match kind {
            Kind::Remove => value.filter(|v| !v.is_null()),
            Kind::Add | Kind::Replace => Some(
                value.ok_or_else(|| invalid_value(format!("'{}' needs a 'value'", kind.name())))?,
            ),
        };
        let ext = match target {
            Target::Attr(p) => {
                if let Some(schema) = p.schema(self.rt) {
                    return self.whole_schema(res, kind, schema, value);
                }
                let r = filter::resolve(self.rt, &p).ok_or_else(|| unknown(&p.to_string()))?;
                if std::ptr::eq(r.attr, &SCHEMAS_ATTRIBUTE) {
                    return self.schemas(res, kind, value);
                }
                self.touched.push(r);
                let name = p.to_string();
                match r.sub {
                    None => self.attribute(res, kind, r, value, &name)?,
                    Some(sub) => self.sub_attribute(res, kind, r, sub, value, &name)?,
                }
                r.ext
            }
            Target::Value { attr, filter, sub } => {
                let r =
                    filter::resolve(self.rt, &attr).ok_or_else(|| unknown(&attr.to_string()))?;
                let name = match &sub {
                    Some(s) => format!("{attr}[{filter}].{s}"),
                    None => format!("{attr}[{filter}]"),
                };
                if r.sub.is_some() || !r.attr.multi_valued || r.attr.kind != AttrType::Complex {
                    return Err(bad(
                        ScimType::InvalidPath,
                        format!("'{name}': a value filter needs a multi-valued complex attribute"),
                    ));
                }
                let sub = match sub {
                    Some(s) => Some(
                        r.attr
                            .sub(&s)
                            .ok_or_else(|| unknown(&format!("{attr}.{s}")))?,
                    ),
                    None => None,
                };
                filter::validate_element_filter(&filter, r.attr)?;
                self.touched.push(r);
                self.selected(res, kind, r, &filter, sub, value, &name)?;
                r.ext
            }
        };
        if let Some(ext) = ext {
            sync_extension(res, ext, self.rt);
        }
        Ok(())
    }

    /// A path naming a whole schema: the core schema's URN, or an extension's (its object).
    fn whole_schema(
        &mut self,
        res: &mut Value,
        kind: Kind,
        schema: Option<&'static str>,
        value: Option<&Value>,
    ) -> Result<()> {
        match (kind, schema) {
            (Kind::Remove, None) => Err(mutability("the core schema cannot be removed")),
            (Kind::Remove, Some(ext)) => {
                if self
                    .rt
                    .extensions
                    .iter()
                    .any(|(s, required)| *required && s.id == ext)
                {
                    return Err(mutability(format!("extension '{ext}' is required")));
                }
                if let Some(obj) = res.as_object_mut()
                    && let Some(k) = key_ci(obj, ext)
                {
                    obj.remove(&k);
                }
                sync_extension(res, ext, self.rt);
                Ok(())
            }
            (_, schema) => {
                let label = schema.unwrap_or(self.rt.schema.id);
                let members = match value {
                    Some(Value::Object(m)) => m,
                    _ => {
                        return Err(invalid_value(format!(
                            "'{label}' needs an object of attributes"
                        )));
                    }
                };
                for (k, v) in members {
                    // Clients that serialise an extension as a resource model send its own
                    // `schemas` inside the object (scim2-tester does); it says nothing new.
                    if schema.is_some() && k.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let path = match schema {
                        Some(u) => format!("{u}:{k}"),
                        None => k.clone(),
                    };
                    let target = parse_target(&path)?;
                    self.at_path(res, kind, target, Some(v))?;
                }
                Ok(())
            }
        }
    }

    /// The `schemas` attribute: URNs of this resource type only; never removed.
    fn schemas(&mut self, res: &mut Value, kind: Kind, value: Option<&Value>) -> Result<()> {
        let Some(v) = value.filter(|_| kind != Kind::Remove) else {
            return Err(mutability("'schemas' is required"));
        };
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut urns: Vec<&'static str> = Vec::new();
        for item in items {
            let s = item
                .as_str()
                .ok_or_else(|| invalid_value("'schemas' holds schema URN strings"))?;
            let urn = self
                .rt
                .schema_urns()
                .find(|u| u.eq_ignore_ascii_case(s))
                .ok_or_else(|| invalid_value(format!("'schemas': unknown schema '{s}'")))?;
            if !urns.contains(&urn) {
                urns.push(urn);
            }
        }
        let obj = res
            .as_object_mut()
            .ok_or_else(|| ScimError::status(500, "the resource is not a JSON object"))?;
        let key = key_ci(obj, "schemas").unwrap_or_else(|| "schemas".to_owned());
        let mut list: Vec<Value> = match (kind, obj.get(&key)) {
            (Kind::Add, Some(Value::Array(a))) => a.clone(),
            _ => Vec::new(),
        };
        for urn in urns {
            if !list
                .iter()
                .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
            {
                list.push(Value::String(urn.to_owned()));
            }
        }
        let core = self.rt.schema.id;
        if !list
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case(core)))
        {
            return Err(invalid_value(format!("'schemas' must contain '{core}'")));
        }
        obj.insert(key, Value::Array(list));
        Ok(())
    }

    /// A path naming an attribute (no sub-attribute, no filter).
    fn attribute(
        &mut self,
        res: &mut Value,
        kind: Kind,
        r: Resolved,
        value: Option<&Value>,
        name: &str,
    ) -> Result<()> {
        let def = r.attr;
        let unassign = match (kind, value) {
            (Kind::Remove, Some(v)) if def.multi_valued => return remove_values(res, r, v, name),
            (Kind::Remove, _) => true,
            (Kind::Add, Some(v)) if v.as_array().is_some_and(Vec::is_empty) => return Ok(()),
            (_, Some(v)) => v.is_null() || v.as_array().is_some_and(Vec::is_empty),
            (_, None) => true,
        };
        if unassign {
            let Some(map) = container_mut(res, r.ext, false)? else {
                return Ok(());
            };
            let Some(key) = key_ci(map, def.name) else {
                return Ok(());
            };
            let present = map.get(&key).is_some_and(is_present);
            if present {
                match def.mutability {
                    Mutability::ReadOnly => {
                        return Err(mutability(format!("'{name}' is readOnly")));
                    }
                    Mutability::Immutable => {
                        return Err(mutability(format!("'{name}' is immutable")));
                    }
                    Mutability::ReadWrite | Mutability::WriteOnly => {}
                }
                if def.required {
                    return Err(mutability(format!(
                        "'{name}' is required and cannot be removed"
                    )));
                }
            }
            map.remove(&key);
            return Ok(());
        }
        let Some(v) = value else {
            return Ok(());
        };
        if def.mutability == Mutability::ReadOnly {
            let current = filter::container(res, r.ext).and_then(|m| get_ci(m, def.name));
            return match current {
                Some(cur) if same_value(def, cur, v) => Ok(()),
                _ => Err(mutability(format!("'{name}' is readOnly"))),
            };
        }
        let new = normalize(def, v, name)?;
        let map = container_mut(res, r.ext, true)?
            .ok_or_else(|| ScimError::status(500, "the resource is not a JSON object"))?;
        let key = key_ci(map, def.name).unwrap_or_else(|| def.name.to_owned());
        if def.multi_valued {
            let Value::Array(items) = new else {
                return Err(invalid_value(format!("'{name}' takes a list of values")));
            };
            for item in &items {
                check_new_element(def, item, name)?;
            }
            let arr = array_mut(map, &key);
            let written: Vec<usize> = match kind {
                Kind::Replace => {
                    *arr = items;
                    (0..arr.len()).collect()
                }
                _ => {
                    let mut written = Vec::new();
                    for item in items {
                        if !arr.iter().any(|e| same_element(def, e, &item)) {
                            arr.push(item);
                            written.push(arr.len() - 1);
                        }
                    }
                    written
                }
            };
            fix_primary(arr, &written, name)?;
            if arr.is_empty() {
                map.remove(&key);
            }
        } else if def.kind == AttrType::Complex {
            let Value::Object(members) = new else {
                return Err(invalid_value(format!("'{name}' takes an object")));
            };
            let obj = object_mut(map, &key);
            merge(obj, def, members, name)?;
            if obj.is_empty() {
                map.remove(&key);
            }
        } else if write_allowed(def, map.get(&key), &new, name)? {
            map.insert(key, new);
        }
        Ok(())
    }

    /// A path `attr.sub` without value filter.
    fn sub_attribute(
        &mut self,
        res: &mut Value,
        kind: Kind,
        r: Resolved,
        sub: &'static Attribute,
        value: Option<&Value>,
        name: &str,
    ) -> Result<()> {
        let def = r.attr;
        if !def.multi_valued && def.mutability == Mutability::ReadOnly {
            let cur = filter::container(res, r.ext)
                .and_then(|m| get_ci(m, def.name))
                .and_then(Value::as_object)
                .and_then(|o| get_ci(o, sub.name));
            return match (kind, value, cur) {
                (Kind::Add | Kind::Replace, Some(n), Some(c)) if same_value(sub, c, n) => Ok(()),
                _ => Err(mutability(format!("'{name}' is readOnly"))),
            };
        }
        let new = match (kind, value) {
            (Kind::Remove, _) | (_, None) => None,
            (_, Some(v)) if v.is_null() => None,
            (_, Some(v)) => Some(normalize(sub, v, name)?),
        };
        if def.multi_valued {
            if new.is_some() {
                return Err(bad(
                    ScimType::InvalidPath,
                    format!(
                        "'{name}' names a sub-attribute of every value; select values with a filter, e.g. '{}[type eq \"work\"].{}'",
                        def.name, sub.name
                    ),
                ));
            }
            let Some(map) = container_mut(res, r.ext, false)? else {
                return Ok(());
            };
            let Some(key) = key_ci(map, def.name) else {
                return Ok(());
            };
            let arr = array_mut(map, &key);
            let all: Vec<usize> = (0..arr.len()).collect();
            remove_sub(arr, &all, def, sub, name)?;
            if arr.is_empty() {
                map.remove(&key);
            }
            return Ok(());
        }
        match new {
            None => {
                let Some(map) = container_mut(res, r.ext, false)? else {
                    return Ok(());
                };
                let Some(key) = key_ci(map, def.name) else {
                    return Ok(());
                };
                let obj = object_mut(map, &key);
                if let Some(k) = key_ci(obj, sub.name) {
                    if obj.get(&k).is_some_and(is_present) {
                        check_removable(sub, name)?;
                    }
                    obj.remove(&k);
                }
                if obj.is_empty() {
                    map.remove(&key);
                }
            }
            Some(n) => {
                let map = container_mut(res, r.ext, true)?
                    .ok_or_else(|| ScimError::status(500, "the resource is not a JSON object"))?;
                let key = key_ci(map, def.name).unwrap_or_else(|| def.name.to_owned());
                let obj = object_mut(map, &key);
                let k = key_ci(obj, sub.name).unwrap_or_else(|| sub.name.to_owned());
                if write_allowed(sub, obj.get(&k), &n, name)? {
                    obj.insert(k, n);
                }
            }
        }
        Ok(())
    }

    /// A path with a value filter: `attr[filter]` or `attr[filter].sub`.
    #[allow(clippy::too_many_arguments)]
    fn selected(
        &mut self,
        res: &mut Value,
        kind: Kind,
        r: Resolved,
        vf: &ast::ValFilter,
        sub: Option<&'static Attribute>,
        value: Option<&Value>,
        name: &str,
    ) -> Result<()> {
        let def = r.attr;
        if def.mutability == Mutability::ReadOnly {
            return Err(mutability(format!("'{name}' is readOnly")));
        }
        let new = match (kind, value) {
            (Kind::Remove, _) | (_, None) => None,
            (_, Some(v)) if v.is_null() => None,
            (_, Some(v)) => Some(match sub {
                Some(s) => normalize(s, v, name)?,
                None => {
                    let mut elem = normalize_element(def, v, name)?;
                    if !elem.is_object() {
                        return Err(invalid_value(format!("'{name}' takes an object")));
                    }
                    strip_nulls(&mut elem);
                    elem
                }
            }),
        };
        let Some(map) = container_mut(res, r.ext, new.is_some())? else {
            return Ok(());
        };
        let key = key_ci(map, def.name).unwrap_or_else(|| def.name.to_owned());
        if new.is_none() && !map.contains_key(&key) {
            return match kind {
                Kind::Replace => Err(bad(
                    ScimType::NoTarget,
                    format!("'{name}' matches no value"),
                )),
                _ => Ok(()),
            };
        }
        let arr = array_mut(map, &key);
        let mut matched: Vec<usize> = arr
            .iter()
            .enumerate()
            .filter(|(_, e)| filter::element_matches(vf, def, e))
            .map(|(i, _)| i)
            .collect();
        match new {
            None => {
                if matched.is_empty() && kind == Kind::Replace {
                    return Err(bad(
                        ScimType::NoTarget,
                        format!("'{name}' matches no value"),
                    ));
                }
                match sub {
                    None => {
                        let mut i = 0;
                        arr.retain(|_| {
                            let keep = !matched.contains(&i);
                            i += 1;
                            keep
                        });
                    }
                    Some(s) => remove_sub(arr, &matched, def, s, name)?,
                }
            }
            Some(n) => {
                if matched.is_empty() {
                    let fields = (kind == Kind::Add)
                        .then(|| eq_fields(vf, def))
                        .flatten()
                        .ok_or_else(|| {
                            bad(ScimType::NoTarget, format!("'{name}' matches no value"))
                        })?;
                    let mut elem = Map::new();
                    for (a, v) in fields {
                        elem.insert(a.name.to_owned(), v);
                    }
                    match (sub, n) {
                        (Some(s), n) => {
                            elem.insert(s.name.to_owned(), n);
                        }
                        (None, Value::Object(o)) => elem.extend(o),
                        (None, _) => {}
                    }
                    let elem = Value::Object(elem);
                    check_new_element(def, &elem, name)?;
                    arr.push(elem);
                    matched.push(arr.len() - 1);
                } else {
                    for &i in &matched {
                        let Some(Value::Object(existing)) = arr.get_mut(i) else {
                            continue;
                        };
                        match (sub, &n) {
                            (Some(s), n) => {
                                let k =
                                    key_ci(existing, s.name).unwrap_or_else(|| s.name.to_owned());
                                if write_allowed(s, existing.get(&k), n, name)? {
                                    existing.insert(k, n.clone());
                                }
                            }
                            (None, Value::Object(o)) if kind == Kind::Add => {
                                merge(existing, def, o.clone(), name)?
                            }
                            (None, Value::Object(o)) => {
                                let replaced = replace_element(def, existing, o.clone(), name)?;
                                *existing = replaced;
                            }
                            (None, _) => {}
                        }
                    }
                }
                fix_primary(arr, &matched, name)?;
            }
        }
        if arr.is_empty() {
            map.remove(&key);
        }
        Ok(())
    }

    /// At most one `primary: true` in each multi-valued attribute written.
    fn check_primaries(&self, res: &Value) -> Result<()> {
        for r in &self.touched {
            if !r.attr.multi_valued || r.attr.sub("primary").is_none() {
                continue;
            }
            let Some(items) = filter::container(res, r.ext)
                .and_then(|m| get_ci(m, r.attr.name))
                .and_then(Value::as_array)
            else {
                continue;
            };
            if items.iter().filter(|e| is_primary(e)).count() > 1 {
                return Err(invalid_value(format!(
                    "'{}': at most one value may have primary true",
                    r.attr.name
                )));
            }
        }
        Ok(())
    }
}

fn unknown(path: &str) -> ScimError {
    bad(ScimType::InvalidPath, format!("unknown attribute '{path}'"))
}

fn parse_target(path: &str) -> Result<Target> {
    if !path.contains('[') {
        return filter::parse_attr_path(path).map(Target::Attr);
    }
    Ok(match filter::parse_patch_path(path)? {
        ast::PatchPath::Attr(a) => Target::Attr(AttrPath::from_ast(a)),
        ast::PatchPath::Value(v) => Target::Value {
            attr: AttrPath::from_ast(v.attr),
            filter: v.filter,
            sub: v.sub_attr,
        },
    })
}

/// The object holding an extension's attributes (created if `create`), or the resource itself.
fn container_mut<'a>(
    res: &'a mut Value,
    ext: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>> {
    let obj = res
        .as_object_mut()
        .ok_or_else(|| ScimError::status(500, "the resource is not a JSON object"))?;
    let Some(urn) = ext else {
        return Ok(Some(obj));
    };
    let key = match key_ci(obj, urn) {
        Some(k) => k,
        None if create => urn.to_owned(),
        None => return Ok(None),
    };
    if create && obj.get(&key).is_none_or(Value::is_null) {
        obj.insert(key.clone(), Value::Object(Map::new()));
    }
    match obj.get_mut(&key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(invalid_value(format!("'{urn}' is not an object"))),
    }
}

/// The array at `key`, made one if absent or not an array (a stray single value is kept).
fn array_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_owned()).or_insert(Value::Null);
    if !slot.is_array() {
        let old = std::mem::take(slot);
        *slot = Value::Array(if old.is_null() { Vec::new() } else { vec![old] });
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("made an array above"),
    }
}

/// The object at `key`, made one if absent or not an object.
fn object_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_owned()).or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("made an object above"),
    }
}

/// Keeps `schemas` in step with an extension's object: listed while it has attributes; an
/// emptied object is dropped with its URN.
fn sync_extension(res: &mut Value, ext: &str, rt: &ResourceType) {
    let Some(obj) = res.as_object_mut() else {
        return;
    };
    let key = key_ci(obj, ext);
    let filled = key
        .as_ref()
        .and_then(|k| obj.get(k))
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()));
    if !filled && let Some(k) = key {
        obj.remove(&k);
    }
    let skey = key_ci(obj, "schemas").unwrap_or_else(|| "schemas".to_owned());
    let list = obj
        .entry(skey)
        .or_insert_with(|| Value::Array(vec![Value::String(rt.schema.id.to_owned())]));
    let Value::Array(list) = list else {
        return;
    };
    let listed = list
        .iter()
        .any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext)));
    if filled && !listed {
        list.push(Value::String(ext.to_owned()));
    } else if !filled {
        list.retain(|x| !x.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext)));
    }
}

/// Type-checks and coerces `v` for `def` (a whole multi-valued attribute takes a list, or one
/// value which becomes a list). Members of complex values get the schema's spelling; nulls in
/// them are kept (they unassign when merged).
fn normalize(def: &'static Attribute, v: &Value, name: &str) -> Result<Value> {
    if !def.multi_valued {
        return normalize_element(def, v, name);
    }
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for x in items.into_iter().filter(|x| !x.is_null()) {
        let mut e = normalize_element(def, x, name)?;
        strip_nulls(&mut e);
        if !e.as_object().is_some_and(Map::is_empty) {
            out.push(e);
        }
    }
    Ok(Value::Array(out))
}

/// Type-checks one value (of a single-valued attribute, or one element of a multi-valued one).
fn normalize_element(def: &'static Attribute, v: &Value, name: &str) -> Result<Value> {
    let wrong = || {
        invalid_value(format!(
            "'{name}' takes a {}{}, not {v}",
            def.kind.as_str(),
            if def.kind == AttrType::DateTime {
                " (RFC 3339)"
            } else {
                ""
            }
        ))
    };
    match def.kind {
        AttrType::Complex => match v {
            Value::Object(o) => {
                let mut out = Map::new();
                for (k, x) in o {
                    let sub = def.sub(k).ok_or_else(|| {
                        invalid_value(format!("'{name}' has no sub-attribute '{k}'"))
                    })?;
                    let nx = if x.is_null() {
                        Value::Null
                    } else {
                        normalize(sub, x, &format!("{name}.{}", sub.name))?
                    };
                    out.insert(sub.name.to_owned(), nx);
                }
                Ok(Value::Object(out))
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => match def.sub("value") {
                Some(value_sub) => {
                    let mut out = Map::new();
                    out.insert(
                        value_sub.name.to_owned(),
                        normalize(value_sub, v, &format!("{name}.value"))?,
                    );
                    Ok(Value::Object(out))
                }
                None => Err(wrong()),
            },
            _ => Err(wrong()),
        },
        AttrType::Boolean => as_bool(v).map(Value::Bool).ok_or_else(wrong),
        AttrType::Integer if v.is_i64() || v.is_u64() => Ok(v.clone()),
        AttrType::Decimal if v.is_number() => Ok(v.clone()),
        AttrType::DateTime if v.as_str().and_then(parse_time).is_some() => Ok(v.clone()),
        AttrType::String | AttrType::Reference | AttrType::Binary if v.is_string() => Ok(v.clone()),
        _ => Err(wrong()),
    }
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(o) = v {
        o.retain(|_, x| !x.is_null());
    }
}

/// Whether two values of `def` are the same (strings by its case exactness).
fn same_value(def: &Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => str_eq(def, x, y),
        _ => a == b,
    }
}

/// Whether `a` and `b` are the same value of multi-valued `def`: for complex values with a
/// `value` sub-attribute, equal `value` and (when both carry one) equal `type`; otherwise equal.
fn same_element(def: &'static Attribute, a: &Value, b: &Value) -> bool {
    if def.kind != AttrType::Complex {
        return same_value(def, a, b);
    }
    let (Some(x), Some(y)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    match def.sub("value") {
        Some(value_sub) => {
            let same = |sub: &Attribute| match (get_ci(x, sub.name), get_ci(y, sub.name)) {
                (Some(p), Some(q)) => Some(same_value(sub, p, q)),
                _ => None,
            };
            same(value_sub) == Some(true) && def.sub("type").and_then(same) != Some(false)
        }
        None => x == y,
    }
}

/// Removes the values listed in `v` from multi-valued `r.attr` (matched by `value` for complex
/// values with one): `remove` with path `members` and a value list.
fn remove_values(res: &mut Value, r: Resolved, v: &Value, name: &str) -> Result<()> {
    let def = r.attr;
    if def.mutability == Mutability::ReadOnly {
        return Err(mutability(format!("'{name}' is readOnly")));
    }
    let Value::Array(targets) = normalize(def, v, name)? else {
        return Ok(());
    };
    let Some(map) = container_mut(res, r.ext, false)? else {
        return Ok(());
    };
    let Some(key) = key_ci(map, def.name) else {
        return Ok(());
    };
    let arr = array_mut(map, &key);
    let by_value = def.kind == AttrType::Complex && def.sub("value").is_some();
    arr.retain(|e| {
        !targets.iter().any(|t| {
            if by_value {
                match (def.sub("value"), e.as_object(), t.as_object()) {
                    (Some(vs), Some(eo), Some(to)) => {
                        match (get_ci(eo, vs.name), get_ci(to, vs.name)) {
                            (Some(a), Some(b)) => same_value(vs, a, b),
                            _ => false,
                        }
                    }
                    _ => false,
                }
            } else {
                same_element(def, e, t)
            }
        })
    });
    if arr.is_empty() {
        if def.required {
            return Err(mutability(format!(
                "'{name}' is required and cannot be removed"
            )));
        }
        map.remove(&key);
    }
    Ok(())
}

/// Removes sub-attribute `sub` from the elements at `indices`; values left without their
/// `value` (or empty) are dropped.
fn remove_sub(
    arr: &mut Vec<Value>,
    indices: &[usize],
    def: &'static Attribute,
    sub: &'static Attribute,
    name: &str,
) -> Result<()> {
    for &i in indices {
        let Some(Value::Object(o)) = arr.get_mut(i) else {
            continue;
        };
        if let Some(k) = key_ci(o, sub.name) {
            if o.get(&k).is_some_and(is_present) {
                check_removable(sub, name)?;
            }
            o.remove(&k);
        }
    }
    let needs_value = def.sub("value").is_some();
    arr.retain(|e| match e.as_object() {
        Some(o) => !o.is_empty() && (!needs_value || get_ci(o, "value").is_some_and(is_present)),
        None => true,
    });
    Ok(())
}

fn check_removable(def: &Attribute, name: &str) -> Result<()> {
    match def.mutability {
        Mutability::ReadOnly => Err(mutability(format!("'{name}' is readOnly"))),
        Mutability::Immutable => Err(mutability(format!("'{name}' is immutable"))),
        _ if def.required => Err(mutability(format!(
            "'{name}' is required and cannot be removed"
        ))),
        _ => Ok(()),
    }
}

/// Whether writing `new` over `current` is allowed and changes something: a readOnly attribute
/// only "takes" its current value (a no-op); an immutable one only a first or the same value.
fn write_allowed(
    def: &Attribute,
    current: Option<&Value>,
    new: &Value,
    name: &str,
) -> Result<bool> {
    let current = current.filter(|c| !c.is_null());
    match def.mutability {
        Mutability::ReadOnly => match current {
            Some(c) if same_value(def, c, new) => Ok(false),
            _ => Err(mutability(format!("'{name}' is readOnly"))),
        },
        Mutability::Immutable => match current {
            Some(c) if same_value(def, c, new) => Ok(false),
            Some(_) => Err(mutability(format!(
                "'{name}' is immutable and already has a value"
            ))),
            None => Ok(true),
        },
        Mutability::ReadWrite | Mutability::WriteOnly => Ok(true),
    }
}

/// Merges the (normalised) members of a complex value into `obj`: nulls unassign.
fn merge(
    obj: &mut Map<String, Value>,
    def: &'static Attribute,
    members: Map<String, Value>,
    name: &str,
) -> Result<()> {
    for (k, x) in members {
        let Some(sub) = def.sub(&k) else {
            continue;
        };
        let sub_name = format!("{name}.{}", sub.name);
        let key = key_ci(obj, sub.name);
        if x.is_null() {
            if let Some(key) = key {
                if obj.get(&key).is_some_and(is_present) {
                    check_removable(sub, &sub_name)?;
                }
                obj.remove(&key);
            }
            continue;
        }
        let key = key.unwrap_or_else(|| sub.name.to_owned());
        if write_allowed(sub, obj.get(&key), &x, &sub_name)? {
            obj.insert(key, x);
        }
    }
    Ok(())
}

/// `existing` replaced by `new`, keeping readOnly and immutable sub-attributes: changing one
/// is `mutability`, leaving one out keeps it.
fn replace_element(
    def: &'static Attribute,
    existing: &Map<String, Value>,
    mut new: Map<String, Value>,
    name: &str,
) -> Result<Map<String, Value>> {
    for sub in def.sub_attributes {
        if !matches!(sub.mutability, Mutability::ReadOnly | Mutability::Immutable) {
            continue;
        }
        let old = get_ci(existing, sub.name).filter(|v| !v.is_null());
        match (old, new.get(sub.name)) {
            (Some(o), Some(n)) if !same_value(sub, o, n) => {
                return Err(mutability(format!(
                    "'{name}.{}' is {}",
                    sub.name,
                    sub.mutability.as_str()
                )));
            }
            (Some(o), None) => {
                new.insert(sub.name.to_owned(), o.clone());
            }
            (None, Some(_)) if sub.mutability == Mutability::ReadOnly => {
                return Err(mutability(format!("'{name}.{}' is readOnly", sub.name)));
            }
            _ => {}
        }
    }
    Ok(new)
}

/// A new value of multi-valued `def` may not set readOnly sub-attributes.
fn check_new_element(def: &'static Attribute, elem: &Value, name: &str) -> Result<()> {
    if let Some(o) = elem.as_object() {
        for sub in def.sub_attributes {
            if sub.mutability == Mutability::ReadOnly && get_ci(o, sub.name).is_some_and(is_present)
            {
                return Err(mutability(format!("'{name}.{}' is readOnly", sub.name)));
            }
        }
    }
    Ok(())
}

fn is_primary(v: &Value) -> bool {
    v.as_object()
        .and_then(|o| get_ci(o, "primary"))
        .and_then(as_bool)
        == Some(true)
}

/// After writing the values at `written`: one of them primary makes every other value
/// non-primary (RFC 7644 §3.5.2); more than one is `invalidValue`.
fn fix_primary(arr: &mut [Value], written: &[usize], name: &str) -> Result<()> {
    let newly: Vec<usize> = written
        .iter()
        .copied()
        .filter(|&i| arr.get(i).is_some_and(is_primary))
        .collect();
    if newly.len() > 1 {
        return Err(invalid_value(format!(
            "'{name}': at most one value may have primary true"
        )));
    }
    if let [keep] = newly[..] {
        for (j, e) in arr.iter_mut().enumerate() {
            if j != keep
                && is_primary(e)
                && let Some(o) = e.as_object_mut()
            {
                let k = key_ci(o, "primary").unwrap_or_else(|| "primary".to_owned());
                o.insert(k, Value::Bool(false));
            }
        }
    }
    Ok(())
}

/// The sub-attribute values a value filter of `eq` comparisons joined by `and` pins down.
fn eq_fields(
    vf: &ast::ValFilter,
    parent: &'static Attribute,
) -> Option<Vec<(&'static Attribute, Value)>> {
    match vf {
        ast::ValFilter::Attr(ast::AttrExp::Comparison(p, ast::CompareOp::Eq, cv))
            if p.uri.is_none() && p.sub_attr.is_none() =>
        {
            let sub = parent.sub(&p.name)?;
            let v = match cv {
                ast::CompValue::Str(s) => Value::String(s.clone()),
                ast::CompValue::True => Value::Bool(true),
                ast::CompValue::False => Value::Bool(false),
                ast::CompValue::Number(n) => Value::Number(n.clone()),
                ast::CompValue::Null => return None,
            };
            Some(vec![(sub, v)])
        }
        ast::ValFilter::And(ops) => {
            let mut out = Vec::new();
            for op in ops.iter() {
                out.extend(eq_fields(op, parent)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Required attributes (core schema, required extensions) the resource had must survive.
fn check_required(before: &Value, after: &Value, rt: &ResourceType) -> Result<()> {
    let schemas = std::iter::once((None, rt.schema)).chain(
        rt.extensions
            .iter()
            .filter(|(_, required)| *required)
            .map(|(s, _)| (Some(s.id), *s)),
    );
    for (ext, schema) in schemas {
        for attr in schema.attributes.iter().filter(|a| a.required) {
            let present = |v: &Value| {
                filter::container(v, ext)
                    .and_then(|m| get_ci(m, attr.name))
                    .is_some_and(is_present)
            };
            if present(before) && !present(after) {
                return Err(mutability(format!(
                    "'{}' is required and cannot be removed",
                    attr.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER_URN, GROUP_TYPE, USER_TYPE};
    use serde_json::json;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": [CORE],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "version": "W/\"3\""}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "acbf3ae7-8463-4692-b4fd-9b4da3f908ce",
            "displayName": "Tour Guides",
            "members": [
                {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
                {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"}
            ]
        })
    }

    fn patch(res: &Value, ops: Value, rt: &ResourceType) -> Result<Value> {
        let mut r = res.clone();
        apply(&mut r, &ops, rt).map(|()| r)
    }

    fn ok(res: &Value, ops: Value, rt: &ResourceType) -> Value {
        patch(res, ops, rt).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error, after checking the resource was left unchanged.
    fn fails(res: &Value, ops: Value, rt: &ResourceType) -> ScimError {
        let mut r = res.clone();
        let e = apply(&mut r, &ops, rt).expect_err("patch should fail");
        assert_eq!(&r, res, "resource changed by a failed patch");
        assert_eq!(e.status, 400);
        e
    }

    fn kind(e: &ScimError) -> ScimType {
        e.scim_type.unwrap_or(ScimType::InvalidSyntax)
    }

    fn member_ids(g: &Value) -> Vec<&str> {
        g["members"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["value"].as_str()).collect())
            .unwrap_or_default()
    }

    // --- RFC 7644 §3.5.2 examples ------------------------------------------------------------

    #[test]
    fn rfc_add_member() {
        let ops = json!([{"op": "add", "path": "members", "value": [{
            "display": "James Smith",
            "$ref": "https://example.com/v2/Users/08e1d05d-121c-4561-8b96-473d93df9210",
            "value": "08e1d05d-121c-4561-8b96-473d93df9210"}]}]);
        let g = ok(&group(), ops.clone(), &GROUP_TYPE);
        assert_eq!(member_ids(&g).len(), 3);
        assert_eq!(
            g["members"][2]["$ref"],
            "https://example.com/v2/Users/08e1d05d-121c-4561-8b96-473d93df9210"
        );
        // already a member: no change
        assert_eq!(ok(&g, ops, &GROUP_TYPE), g);
    }

    #[test]
    fn rfc_add_without_path() {
        let ops = json!([{"op": "add", "value": {
            "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@new.example", "type": "other"}],
            "displayName": "Babs"}}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(u["displayName"], "Babs");
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(3), "{u}");
        // nickname is not in lockgate's schema
        let e = fails(
            &user(),
            json!([{"op": "add", "value": {"nickname": "Babs"}}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::InvalidPath);
        assert!(e.detail.contains("nickname"), "{}", e.detail);
    }

    #[test]
    fn rfc_remove_member_and_all_members() {
        let ops = json!([{"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]);
        let g = ok(&group(), ops.clone(), &GROUP_TYPE);
        assert_eq!(member_ids(&g), ["902c246b-6245-4190-8e05-00816be7344a"]);
        // not a member: success, no change
        assert_eq!(ok(&g, ops, &GROUP_TYPE), g);
        let g = ok(
            &group(),
            json!([{"op": "remove", "path": "members"}]),
            &GROUP_TYPE,
        );
        assert!(g.get("members").is_none());
    }

    #[test]
    fn rfc_remove_with_complex_filter() {
        let ops = json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}])
        );
        // the last value removed: the attribute is unassigned
        let ops = json!([{"op": "remove", "path": "emails[value pr]"}]);
        assert!(ok(&user(), ops, &USER_TYPE).get("emails").is_none());
    }

    #[test]
    fn rfc_remove_and_add_member_and_replace_all() {
        let ops = json!([
            {"op": "remove", "path": "members[value eq\"2819c223-7f76-453a-919d-413861904646\"]"},
            {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}
        ]);
        let g = ok(&group(), ops, &GROUP_TYPE);
        assert_eq!(
            member_ids(&g),
            ["902c246b-6245-4190-8e05-00816be7344a", "08e1d05d"]
        );
        let ops = json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}
        ]);
        assert_eq!(member_ids(&ok(&group(), ops, &GROUP_TYPE)), ["a", "b"]);
    }

    #[test]
    fn rfc_replace_examples() {
        // replace all members
        let ops = json!([{"op": "replace", "path": "members", "value": [{"display": "Babs", "value": "x1"}, {"value": "x2"}]}]);
        assert_eq!(member_ids(&ok(&group(), ops, &GROUP_TYPE)), ["x1", "x2"]);
        // replace a work address's street: sub-attribute of the matching values
        let u = json!({"schemas": [CORE], "userName": "b", "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"},
            {"type": "home", "streetAddress": "456 Hollywood Blvd"}]});
        let ops = json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]);
        let u2 = ok(&u, ops, &USER_TYPE);
        assert_eq!(u2["addresses"][0]["streetAddress"], "1010 Broadway Ave");
        assert_eq!(u2["addresses"][0]["locality"], "Hollywood");
        assert_eq!(u2["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
        // replace a whole matching value
        let ops = json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value":
            {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood", "region": "CA"}}]);
        let u3 = ok(&u, ops, &USER_TYPE);
        assert_eq!(
            u3["addresses"][0]["streetAddress"],
            "911 Universal City Plaza"
        );
        assert_eq!(u3["addresses"][0]["region"], "CA");
        // replace without path: several attributes
        let ops = json!([{"op": "replace", "value": {
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
            "userName": "Babs", "name": {"familyName": "Jensen-Smith"}}}]);
        let u4 = ok(&user(), ops, &USER_TYPE);
        assert_eq!(u4["userName"], "Babs");
        assert_eq!(u4["emails"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            u4["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen-Smith"}),
            "sub-attributes not given are kept"
        );
    }

    #[test]
    fn replace_filter_matching_nothing_is_no_target() {
        let ops =
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@y"}]);
        let e = fails(&user(), ops, &USER_TYPE);
        assert_eq!(kind(&e), ScimType::NoTarget);
        assert!(
            e.detail.contains("operation 1") && e.detail.contains("emails"),
            "{}",
            e.detail
        );
        let ops = json!([{"op": "replace", "path": "members[value eq \"nobody\"]", "value": {"value": "nobody"}}]);
        assert_eq!(kind(&fails(&group(), ops, &GROUP_TYPE)), ScimType::NoTarget);
        let ops = json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": null}]);
        assert_eq!(kind(&fails(&user(), ops, &USER_TYPE)), ScimType::NoTarget);
    }

    // --- paths -------------------------------------------------------------------------------

    #[test]
    fn simple_and_sub_attribute_paths() {
        let u = ok(
            &user(),
            json!([{"op": "replace", "path": "displayName", "value": "Babs"}]),
            &USER_TYPE,
        );
        assert_eq!(u["displayName"], "Babs");
        let u = ok(
            &user(),
            json!([{"op": "replace", "path": "name.givenName", "value": "Babs"}]),
            &USER_TYPE,
        );
        assert_eq!(
            u["name"],
            json!({"givenName": "Babs", "familyName": "Jensen"})
        );
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "name.middleName", "value": "J"}]),
            &USER_TYPE,
        );
        assert_eq!(u["name"]["middleName"], "J");
        let u = ok(
            &user(),
            json!([{"op": "remove", "path": "name.givenName"}]),
            &USER_TYPE,
        );
        assert_eq!(u["name"], json!({"familyName": "Jensen"}));
        let u = ok(
            &u,
            json!([{"op": "remove", "path": "name.familyName"}]),
            &USER_TYPE,
        );
        assert!(
            u.get("name").is_none(),
            "an emptied complex attribute is unassigned"
        );
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "title", "value": "Guide"}]),
            &USER_TYPE,
        );
        assert_eq!(u["title"], "Guide");
        let u = ok(
            &user(),
            json!([{"op": "remove", "path": "title"}]),
            &USER_TYPE,
        );
        assert_eq!(u, user(), "removing an absent attribute changes nothing");
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:title", "value": "G"}]),
            &USER_TYPE,
        );
        assert_eq!(u["title"], "G");
    }

    #[test]
    fn attribute_names_are_case_insensitive_and_keep_stored_spelling() {
        let u = ok(
            &user(),
            json!([{"op": "Replace", "path": "USERNAME", "value": "x"}]),
            &USER_TYPE,
        );
        assert_eq!(u["userName"], "x");
        assert!(u.get("USERNAME").is_none());
        let stored = json!({"schemas": [CORE], "username": "a"});
        let u = ok(
            &stored,
            json!([{"op": "replace", "path": "userName", "value": "b"}]),
            &USER_TYPE,
        );
        assert_eq!(u, json!({"schemas": [CORE], "username": "b"}));
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "Name.GIVENNAME", "value": "B"}]),
            &USER_TYPE,
        );
        assert_eq!(u["name"]["givenName"], "B");
        let u = ok(
            &user(),
            json!([{"op": "add", "value": {"DisplayName": "D", "NAME": {"MiddleName": "M"}}}]),
            &USER_TYPE,
        );
        assert_eq!(u["displayName"], "D");
        assert_eq!(u["name"]["middleName"], "M");
    }

    #[test]
    fn extension_paths_and_objects() {
        let u = ok(
            &user(),
            json!([{"op": "add", "path": format!("{ENTERPRISE_USER_URN}:employeeNumber"), "value": "701984"}]),
            &USER_TYPE,
        );
        assert_eq!(u[ENTERPRISE_USER_URN]["employeeNumber"], "701984");
        assert_eq!(
            u["schemas"],
            json!([CORE, ENTERPRISE_USER_URN]),
            "extension URN added to schemas"
        );
        let u = ok(
            &u,
            json!([{"op": "replace", "path": format!("{ENTERPRISE_USER_URN}:manager.value"), "value": "26118915"}]),
            &USER_TYPE,
        );
        assert_eq!(
            u[ENTERPRISE_USER_URN]["manager"],
            json!({"value": "26118915"})
        );
        // without path, an extension URN key holding an object
        let u = ok(
            &u,
            json!([{"op": "replace", "value": {ENTERPRISE_USER_URN: {"department": "Tours", "employeeNumber": "1"}}}]),
            &USER_TYPE,
        );
        assert_eq!(u[ENTERPRISE_USER_URN]["department"], "Tours");
        assert_eq!(u[ENTERPRISE_USER_URN]["employeeNumber"], "1");
        assert_eq!(
            u[ENTERPRISE_USER_URN]["manager"]["value"], "26118915",
            "other members kept"
        );
        // without path, a fully qualified key (Entra ID)
        let u = ok(
            &u,
            json!([{"op": "Replace", "value": {format!("{ENTERPRISE_USER_URN}:department"): "Sales", "name.givenName": "B"}}]),
            &USER_TYPE,
        );
        assert_eq!(u[ENTERPRISE_USER_URN]["department"], "Sales");
        assert_eq!(u["name"]["givenName"], "B");
        // the extension URN as path
        let u = ok(
            &u,
            json!([{"op": "add", "path": ENTERPRISE_USER_URN, "value": {"division": "East"}}]),
            &USER_TYPE,
        );
        assert_eq!(u[ENTERPRISE_USER_URN]["division"], "East");
        // removing every extension attribute drops the object and its URN
        let u = ok(
            &u,
            json!([{"op": "remove", "path": ENTERPRISE_USER_URN}]),
            &USER_TYPE,
        );
        assert!(u.get(ENTERPRISE_USER_URN).is_none());
        assert_eq!(u["schemas"], json!([CORE]));
        let u = ok(
            &user(),
            json!([
            {"op": "add", "path": format!("{ENTERPRISE_USER_URN}:department"), "value": "D"},
            {"op": "remove", "path": format!("{ENTERPRISE_USER_URN}:department")}]),
            &USER_TYPE,
        );
        assert_eq!(u, user());
        // unqualified extension attribute (lenient)
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "costCenter", "value": "4130"}]),
            &USER_TYPE,
        );
        assert_eq!(u[ENTERPRISE_USER_URN]["costCenter"], "4130");
    }

    #[test]
    fn value_filter_with_sub_attribute() {
        let ops = json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["emails"][0],
            json!({"value": "new@example.com", "type": "work", "primary": true})
        );
        assert_eq!(u["emails"][1]["value"], "babs@jensen.org");
        let ops = json!([{"op": "add", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].display", "value": "Babs"}]);
        let g = ok(&group(), ops, &GROUP_TYPE);
        assert_eq!(g["members"][0]["display"], "Babs");
        // remove a sub-attribute of matching values
        let ops = json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        // removing `value` drops the value entirely
        let ops = json!([{"op": "remove", "path": "emails[type eq \"work\"].value"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}])
        );
    }

    #[test]
    fn add_through_filter_matching_nothing_creates_the_value() {
        let ops = json!([{"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+44 7700 900123"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["phoneNumbers"],
            json!([{"type": "mobile", "value": "+44 7700 900123"}])
        );
        let ops = json!([{"op": "add", "path": "addresses[type eq \"work\" and country eq \"DE\"].locality", "value": "Berlin"}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(
            u["addresses"],
            json!([{"type": "work", "country": "DE", "locality": "Berlin"}])
        );
        let ops = json!([{"op": "add", "path": "addresses[type eq \"work\"]", "value": {"locality": "Oslo"}}]);
        assert_eq!(
            ok(&user(), ops, &USER_TYPE)["addresses"],
            json!([{"type": "work", "locality": "Oslo"}])
        );
        // a filter that does not pin values down
        let ops =
            json!([{"op": "add", "path": "phoneNumbers[type ne \"work\"].value", "value": "1"}]);
        assert_eq!(kind(&fails(&user(), ops, &USER_TYPE)), ScimType::NoTarget);
    }

    #[test]
    fn path_errors() {
        for (path, want) in [
            ("nickName", ScimType::InvalidPath),
            ("name.nickName", ScimType::InvalidPath),
            ("userName.x", ScimType::InvalidPath),
            ("emails[type eq \"work\"].bogus", ScimType::InvalidPath),
            ("userName[value eq \"x\"]", ScimType::InvalidPath),
            ("name[givenName eq \"x\"]", ScimType::InvalidPath),
            ("emails[type eq \"work\"", ScimType::InvalidPath),
            ("emails[type eq work]", ScimType::InvalidPath),
            ("a.b.c", ScimType::InvalidPath),
            ("emails[primary gt true]", ScimType::InvalidFilter),
            (
                "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
                ScimType::InvalidPath,
            ),
        ] {
            let e = fails(
                &user(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
                &USER_TYPE,
            );
            assert_eq!(kind(&e), want, "{path}: {}", e.detail);
        }
        let e = fails(
            &user(),
            json!([{"op": "replace", "path": "emails[type eq work]", "value": "x"}]),
            &USER_TYPE,
        );
        assert!(e.detail.contains("character 16"), "{}", e.detail);
        let e = fails(
            &user(),
            json!([{"op": "replace", "path": 5, "value": "x"}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::InvalidPath);
        let e = fails(
            &user(),
            json!([{"op": "replace", "path": "emails.value", "value": "x"}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::InvalidPath);
        let deep = format!("emails[{}type eq \"w\"{}]", "(".repeat(20), ")".repeat(20));
        let e = fails(&user(), json!([{"op": "remove", "path": deep}]), &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidPath);
        assert!(e.detail.contains("deeper"), "{}", e.detail);
    }

    // --- request structure -------------------------------------------------------------------

    #[test]
    fn op_names_are_case_insensitive() {
        for op in ["add", "Add", "ADD", "replace", "Replace", "REPLACE"] {
            let u = ok(
                &user(),
                json!([{"op": op, "path": "title", "value": "T"}]),
                &USER_TYPE,
            );
            assert_eq!(u["title"], "T");
        }
        let u = ok(
            &user(),
            json!([{"op": "Remove", "path": "name"}]),
            &USER_TYPE,
        );
        assert!(u.get("name").is_none());
        let u = ok(
            &user(),
            json!([{"OP": "replace", "PATH": "title", "VALUE": "T"}]),
            &USER_TYPE,
        );
        assert_eq!(u["title"], "T");
    }

    #[test]
    fn malformed_requests() {
        let u = user();
        assert_eq!(
            kind(&fails(&u, json!({"op": "add"}), &USER_TYPE)),
            ScimType::InvalidSyntax
        );
        assert_eq!(
            kind(&fails(&u, json!([]), &USER_TYPE)),
            ScimType::InvalidSyntax
        );
        assert_eq!(
            kind(&fails(&u, json!(["add"]), &USER_TYPE)),
            ScimType::InvalidSyntax
        );
        assert_eq!(
            kind(&fails(&u, json!([{"path": "title"}]), &USER_TYPE)),
            ScimType::InvalidSyntax
        );
        let e = fails(&u, json!([{"op": "move", "path": "title"}]), &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidSyntax);
        assert!(e.detail.contains("move"));
        let e = fails(&u, json!([{"op": "add", "path": "title"}]), &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidValue);
        let e = fails(&u, json!([{"op": "add", "value": "x"}]), &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidValue);
        let e = fails(&u, json!([{"op": "remove"}]), &USER_TYPE);
        assert_eq!(kind(&e), ScimType::NoTarget);
        let e = fails(
            &u,
            json!([{"op": "remove", "value": {"title": "x"}}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::NoTarget);
    }

    #[test]
    fn operation_count_bound() {
        let one = json!({"op": "replace", "path": "title", "value": "T"});
        let ops = Value::Array(vec![one.clone(); MAX_PATCH_OPERATIONS]);
        assert_eq!(ok(&user(), ops, &USER_TYPE)["title"], "T");
        let ops = Value::Array(vec![one; MAX_PATCH_OPERATIONS + 1]);
        let e = fails(&user(), ops, &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidValue);
        assert!(
            e.detail.contains(&MAX_PATCH_OPERATIONS.to_string()),
            "{}",
            e.detail
        );
    }

    #[test]
    fn all_or_nothing() {
        let ops = json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "add", "path": "emails", "value": [{"value": "c@x", "type": "other"}]},
            {"op": "replace", "path": "id", "value": "other-id"}
        ]);
        let e = fails(&user(), ops, &USER_TYPE);
        assert_eq!(kind(&e), ScimType::Mutability);
        assert!(e.detail.starts_with("operation 3:"), "{}", e.detail);
    }

    #[test]
    fn operations_apply_in_order() {
        let ops = json!([
            {"op": "replace", "path": "title", "value": "A"},
            {"op": "replace", "path": "title", "value": "B"},
            {"op": "add", "path": "emails[type eq \"other\"].value", "value": "o@x"},
            {"op": "replace", "path": "emails[type eq \"other\"].display", "value": "Other"}
        ]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(u["title"], "B");
        assert_eq!(
            u["emails"][2],
            json!({"type": "other", "value": "o@x", "display": "Other"})
        );
    }

    // --- mutability and required -------------------------------------------------------------

    #[test]
    fn read_only_attributes() {
        for (path, value) in [
            ("id", json!("x")),
            ("meta", json!({"version": "W/\"9\""})),
            ("meta.version", json!("W/\"9\"")),
            ("meta.created", json!("2020-01-01T00:00:00Z")),
        ] {
            let e = fails(
                &user(),
                json!([{"op": "replace", "path": path, "value": value}]),
                &USER_TYPE,
            );
            assert_eq!(kind(&e), ScimType::Mutability, "{path}");
            assert!(e.detail.contains("readOnly"), "{}", e.detail);
        }
        for path in ["id", "meta", "meta.version"] {
            let e = fails(&user(), json!([{"op": "remove", "path": path}]), &USER_TYPE);
            assert_eq!(kind(&e), ScimType::Mutability, "{path}");
        }
        let e = fails(
            &user(),
            json!([{"op": "add", "value": {"id": "x"}}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let path = format!("{ENTERPRISE_USER_URN}:manager.displayName");
        let e = fails(
            &user(),
            json!([{"op": "add", "path": path, "value": "John"}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let path = format!("{ENTERPRISE_USER_URN}:manager");
        let e = fails(
            &user(),
            json!([{"op": "add", "path": path, "value": {"value": "m", "displayName": "John"}}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        // the same value again (Okta sends `id` back) is ignored
        let u = ok(
            &group(),
            json!([{"op": "replace", "value": {"id": "acbf3ae7-8463-4692-b4fd-9b4da3f908ce", "displayName": "Guides"}}]),
            &GROUP_TYPE,
        );
        assert_eq!(u["displayName"], "Guides");
        assert_eq!(u["id"], group()["id"]);
    }

    #[test]
    fn immutable_sub_attributes() {
        // members.value is immutable: a value filter may not change it
        let ops = json!([{"op": "replace", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].value", "value": "other"}]);
        let e = fails(&group(), ops, &GROUP_TYPE);
        assert_eq!(kind(&e), ScimType::Mutability);
        assert!(e.detail.contains("immutable"), "{}", e.detail);
        let ops = json!([{"op": "replace", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]", "value": {"value": "other"}}]);
        assert_eq!(
            kind(&fails(&group(), ops, &GROUP_TYPE)),
            ScimType::Mutability
        );
        let ops = json!([{"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"].value"}]);
        assert_eq!(
            kind(&fails(&group(), ops, &GROUP_TYPE)),
            ScimType::Mutability
        );
        // the same value, or other sub-attributes, are fine
        let ops = json!([{"op": "replace", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]", "value": {"display": "Babs"}}]);
        let g = ok(&group(), ops, &GROUP_TYPE);
        assert_eq!(
            g["members"][0],
            json!({"display": "Babs", "value": "2819c223-7f76-453a-919d-413861904646"})
        );
        // a first value may be added to an immutable attribute
        let g0 = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", "members": [{"display": "x"}]});
        let ops = json!([{"op": "add", "path": "members[display eq \"x\"].value", "value": "id1"}]);
        assert_eq!(ok(&g0, ops, &GROUP_TYPE)["members"][0]["value"], "id1");
    }

    #[test]
    fn required_attributes_cannot_be_removed() {
        let e = fails(
            &user(),
            json!([{"op": "remove", "path": "userName"}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        assert!(
            e.detail.contains("userName") && e.detail.contains("required"),
            "{}",
            e.detail
        );
        let e = fails(
            &group(),
            json!([{"op": "remove", "path": "displayName"}]),
            &GROUP_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let e = fails(
            &group(),
            json!([{"op": "replace", "path": "displayName", "value": null}]),
            &GROUP_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let e = fails(
            &user(),
            json!([{"op": "replace", "value": {"userName": null}}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let e = fails(
            &user(),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
        let e = fails(
            &user(),
            json!([{"op": "remove", "path": "schemas"}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::Mutability);
    }

    // --- values ------------------------------------------------------------------------------

    #[test]
    fn values_are_type_checked() {
        for (path, value) in [
            ("active", json!("yes")),
            ("active", json!(1)),
            ("userName", json!(5)),
            ("userName", json!({"a": 1})),
            ("name", json!(["x"])),
            ("name", json!({"nickName": "x"})),
            ("name.givenName", json!(true)),
            ("emails", json!([{"value": "a@b", "primary": "maybe"}])),
            ("emails", json!([{"value": "a@b", "bogus": 1}])),
            ("emails", json!(["a@b", 5])),
            ("meta.created", json!("x")),
        ] {
            let e = fails(
                &user(),
                json!([{"op": "add", "path": path, "value": value}]),
                &USER_TYPE,
            );
            if path.starts_with("meta") {
                assert_eq!(kind(&e), ScimType::Mutability, "{path}");
                continue;
            }
            assert_eq!(kind(&e), ScimType::InvalidValue, "{path}: {}", e.detail);
            let top = path.split('.').next().unwrap_or(path);
            assert!(e.detail.contains(top), "{path}: {}", e.detail);
        }
    }

    #[test]
    fn entra_string_booleans() {
        let u = ok(
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            &USER_TYPE,
        );
        assert_eq!(u["active"], json!(false));
        let u = ok(
            &user(),
            json!([{"op": "Replace", "value": {"active": "True"}}]),
            &USER_TYPE,
        );
        assert_eq!(u["active"], json!(true));
        let ops = json!([{"op": "Add", "path": "emails", "value": [{"value": "c@x", "type": "other", "primary": "True"}]}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(u["emails"][2]["primary"], json!(true));
        assert_eq!(
            u["emails"][0]["primary"],
            json!(false),
            "the old primary gives way"
        );
    }

    #[test]
    fn entra_manager_as_string() {
        let path = format!("{ENTERPRISE_USER_URN}:manager");
        let u = ok(
            &user(),
            json!([{"op": "Replace", "path": path, "value": "26118915-6090"}]),
            &USER_TYPE,
        );
        assert_eq!(
            u[ENTERPRISE_USER_URN]["manager"],
            json!({"value": "26118915-6090"})
        );
        let u = ok(&u, json!([{"op": "Remove", "path": path}]), &USER_TYPE);
        assert!(u.get(ENTERPRISE_USER_URN).is_none());
    }

    #[test]
    fn entra_remove_members_by_value_list() {
        let ops = json!([{"op": "Remove", "path": "members", "value": [{"value": "2819c223-7f76-453a-919d-413861904646"}, {"value": "not-a-member"}]}]);
        let g = ok(&group(), ops, &GROUP_TYPE);
        assert_eq!(member_ids(&g), ["902c246b-6245-4190-8e05-00816be7344a"]);
        let ops = json!([{"op": "Remove", "path": "members", "value": [{"value": "902c246b-6245-4190-8e05-00816be7344a"}]}]);
        assert!(ok(&g, ops, &GROUP_TYPE).get("members").is_none());
        // members.value is caseExact
        let ops = json!([{"op": "remove", "path": "members", "value": [{"value": "2819C223-7F76-453A-919D-413861904646"}]}]);
        assert_eq!(member_ids(&ok(&group(), ops, &GROUP_TYPE)).len(), 2);
        // Entra adds members the same way
        let ops = json!([{"op": "Add", "path": "members", "value": [{"value": "new-id"}]}]);
        assert_eq!(member_ids(&ok(&group(), ops, &GROUP_TYPE)).len(), 3);
    }

    #[test]
    fn adding_present_values_does_not_duplicate() {
        let ops = json!([{"op": "add", "path": "emails", "value": [{"value": "BJENSEN@example.com", "type": "work"}]}]);
        assert_eq!(
            ok(&user(), ops, &USER_TYPE),
            user(),
            "case-insensitive value, same type"
        );
        let ops = json!([{"op": "add", "path": "emails", "value": {"value": "babs@jensen.org"}}]);
        assert_eq!(
            ok(&user(), ops, &USER_TYPE),
            user(),
            "no type given, single value not in a list"
        );
        let ops = json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "work"}]}]);
        assert_eq!(
            ok(&user(), ops, &USER_TYPE)["emails"]
                .as_array()
                .map(Vec::len),
            Some(3),
            "other type"
        );
        let ops = json!([{"op": "add", "path": "members", "value": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "type": "User"}, {"value": "n"}, {"value": "n"}]}]);
        assert_eq!(member_ids(&ok(&group(), ops, &GROUP_TYPE)).len(), 3);
    }

    #[test]
    fn primary_is_unique() {
        // setting a new primary clears the old one (RFC 7644 §3.5.2)
        let ops =
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]);
        let u = ok(&user(), ops, &USER_TYPE);
        assert_eq!(u["emails"][0]["primary"], json!(false));
        assert_eq!(u["emails"][1]["primary"], json!(true));
        // two primaries written at once
        let ops = json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}]);
        let e = fails(&user(), ops, &USER_TYPE);
        assert_eq!(kind(&e), ScimType::InvalidValue);
        assert!(e.detail.contains("primary"), "{}", e.detail);
        let ops = json!([{"op": "replace", "path": "emails[value pr].primary", "value": true}]);
        assert_eq!(
            kind(&fails(&user(), ops, &USER_TYPE)),
            ScimType::InvalidValue
        );
    }

    #[test]
    fn null_and_empty_values_unassign() {
        let u = ok(
            &user(),
            json!([{"op": "replace", "path": "name", "value": null}]),
            &USER_TYPE,
        );
        assert!(u.get("name").is_none());
        let u = ok(
            &user(),
            json!([{"op": "replace", "path": "emails", "value": []}]),
            &USER_TYPE,
        );
        assert!(u.get("emails").is_none());
        let u = ok(
            &user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": null}}]),
            &USER_TYPE,
        );
        assert_eq!(u["name"], json!({"familyName": "Jensen"}));
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "emails", "value": []}]),
            &USER_TYPE,
        );
        assert_eq!(u, user());
    }

    #[test]
    fn schemas_attribute() {
        let u = ok(
            &user(),
            json!([{"op": "add", "path": "schemas", "value": [ENTERPRISE_USER_URN]}]),
            &USER_TYPE,
        );
        assert_eq!(u["schemas"], json!([CORE, ENTERPRISE_USER_URN]));
        let e = fails(
            &user(),
            json!([{"op": "add", "path": "schemas", "value": ["urn:x:y"]}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::InvalidValue);
        let e = fails(
            &user(),
            json!([{"op": "replace", "path": "schemas", "value": [ENTERPRISE_USER_URN]}]),
            &USER_TYPE,
        );
        assert_eq!(kind(&e), ScimType::InvalidValue);
    }
}
