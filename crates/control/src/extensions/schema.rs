//! The JSON Schema subset of an extension's `settingsSchema`, and the check
//! of a workspace's settings against it.
//!
//! A schema is an object schema: `{"type":"object", "properties":{…},
//! "required":[…], "additionalProperties": bool}`; each property has a
//! `type` of `string`, `number`, `integer` or `boolean` and may have `enum`,
//! `minimum`, `maximum` (numbers), `minLength`, `maxLength` (strings), and
//! the annotations `title`, `description`, `default`. Any other keyword is
//! refused when the extension is uploaded, so a schema never claims a check
//! that is not made. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

const MAX_PROPERTIES: usize = 100;
const MAX_ENUM: usize = 100;
const ANNOTATIONS: [&str; 4] = ["title", "description", "default", "$comment"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    String,
    Number,
    Integer,
    Boolean,
}

#[derive(Debug, Clone, PartialEq)]
struct Property {
    ty: Type,
    choices: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
}

/// A checked settings schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    properties: BTreeMap<String, Property>,
    required: Vec<String>,
    additional: bool,
}

fn number(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("{what} must be a number"))
}

fn count(v: &Value, what: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("{what} must be a non-negative integer"))
}

fn property(name: &str, v: &Value) -> Result<Property, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("property {name:?} must be an object"))?;
    let ty = match obj.get("type").and_then(Value::as_str) {
        Some("string") => Type::String,
        Some("number") => Type::Number,
        Some("integer") => Type::Integer,
        Some("boolean") => Type::Boolean,
        _ => {
            return Err(format!(
                "property {name:?} needs a type: string, number, integer or boolean"
            ))
        }
    };
    let mut p = Property {
        ty,
        choices: None,
        minimum: None,
        maximum: None,
        min_length: None,
        max_length: None,
    };
    for (key, val) in obj {
        let what = format!("{name}.{key}");
        match key.as_str() {
            "type" => {}
            "enum" => {
                let list = val
                    .as_array()
                    .filter(|l| !l.is_empty() && l.len() <= MAX_ENUM)
                    .ok_or_else(|| format!("{what} must be an array of 1..={MAX_ENUM} values"))?;
                p.choices = Some(list.clone());
            }
            "minimum" if matches!(ty, Type::Number | Type::Integer) => {
                p.minimum = Some(number(val, &what)?)
            }
            "maximum" if matches!(ty, Type::Number | Type::Integer) => {
                p.maximum = Some(number(val, &what)?)
            }
            "minLength" if ty == Type::String => p.min_length = Some(count(val, &what)?),
            "maxLength" if ty == Type::String => p.max_length = Some(count(val, &what)?),
            k if ANNOTATIONS.contains(&k) => {}
            k => return Err(format!("unsupported keyword {k:?} in property {name:?}")),
        }
    }
    Ok(p)
}

impl Schema {
    /// Checks a manifest's `settingsSchema`.
    pub fn compile(v: &Value) -> Result<Schema, String> {
        let obj = v.as_object().ok_or("settingsSchema must be an object")?;
        let mut schema = Schema {
            properties: BTreeMap::new(),
            required: Vec::new(),
            additional: true,
        };
        for (key, val) in obj {
            match key.as_str() {
                "type" if val == "object" => {}
                "type" => return Err("settingsSchema.type must be \"object\"".into()),
                "$schema" => {}
                "properties" => {
                    let props = val
                        .as_object()
                        .filter(|p| p.len() <= MAX_PROPERTIES)
                        .ok_or_else(|| {
                            format!("properties must be an object of at most {MAX_PROPERTIES}")
                        })?;
                    for (name, p) in props {
                        schema.properties.insert(name.clone(), property(name, p)?);
                    }
                }
                "required" => {
                    let list = val.as_array().ok_or("required must be an array")?;
                    for r in list {
                        let r = r.as_str().ok_or("required must list property names")?;
                        schema.required.push(r.to_string());
                    }
                }
                "additionalProperties" => {
                    schema.additional = val
                        .as_bool()
                        .ok_or("additionalProperties must be true or false")?
                }
                k if ANNOTATIONS.contains(&k) => {}
                k => return Err(format!("unsupported keyword {k:?} in settingsSchema")),
            }
        }
        if let Some(r) = schema
            .required
            .iter()
            .find(|r| !schema.properties.contains_key(*r))
        {
            return Err(format!("required names {r:?}, which is not a property"));
        }
        Ok(schema)
    }

    /// Checks settings against the schema; the error says which setting and why.
    pub fn check(&self, settings: &Map<String, Value>) -> Result<(), String> {
        if let Some(r) = self.required.iter().find(|r| !settings.contains_key(*r)) {
            return Err(format!("setting {r:?} is required"));
        }
        for (name, value) in settings {
            match self.properties.get(name) {
                Some(p) => check_value(name, p, value)?,
                None if self.additional => {}
                None => return Err(format!("setting {name:?} is not in the schema")),
            }
        }
        Ok(())
    }
}

fn check_value(name: &str, p: &Property, v: &Value) -> Result<(), String> {
    let type_ok = match p.ty {
        Type::String => v.is_string(),
        Type::Boolean => v.is_boolean(),
        Type::Number => v.is_number(),
        Type::Integer => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
    };
    if !type_ok {
        let ty = match p.ty {
            Type::String => "a string",
            Type::Number => "a number",
            Type::Integer => "an integer",
            Type::Boolean => "true or false",
        };
        return Err(format!("setting {name:?} must be {ty}"));
    }
    if let Some(choices) = &p.choices {
        if !choices.contains(v) {
            return Err(format!(
                "setting {name:?} must be one of {}",
                Value::from(choices.clone())
            ));
        }
    }
    if let Some(f) = v.as_f64() {
        if p.minimum.is_some_and(|m| f < m) || p.maximum.is_some_and(|m| f > m) {
            return Err(format!("setting {name:?} is out of range"));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if p.min_length.is_some_and(|m| len < m) || p.max_length.is_some_and(|m| len > m) {
            return Err(format!("setting {name:?} has a length out of range"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Schema;

    fn settings(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn checks_the_subset() {
        let s = Schema::compile(&json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["color"],
            "properties": {
                "color": {"type": "string", "enum": ["red", "blue"]},
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "label": {"type": "string", "maxLength": 3},
                "on": {"type": "boolean", "default": true}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s
            .check(&settings(
                json!({"color": "red", "size": 3, "label": "abc", "on": false})
            ))
            .is_ok());
        for bad in [
            json!({}),
            json!({"color": "green"}),
            json!({"color": "red", "size": 11}),
            json!({"color": "red", "size": 1.5}),
            json!({"color": "red", "label": "abcd"}),
            json!({"color": "red", "on": "yes"}),
            json!({"color": "red", "other": 1}),
        ] {
            assert!(s.check(&settings(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        for bad in [
            json!([]),
            json!({"type": "array"}),
            json!({"properties": {"a": {"type": "string", "pattern": "x"}}}),
            json!({"properties": {"a": {"type": "object"}}}),
            json!({"required": ["missing"]}),
            json!({"oneOf": []}),
        ] {
            assert!(Schema::compile(&bad).is_err(), "{bad}");
        }
    }
}
