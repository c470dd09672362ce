//! JSON Lines in the brief's record shape: one object per line. Values are borrowed from the line and
//! validated field by field; unknown keys are ignored, a repeated key is an error.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::fields::{Field, FieldError, RawFields, Value};

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = RawFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: RawFields<'de> = Default::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match Field::ALL.iter().find(|f| f.name() == key) {
                Some(f) => {
                    let raw: &'de RawValue = map.next_value()?;
                    if fields[*f as usize].is_some() {
                        return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                    }
                    fields[*f as usize] = classify(raw).map_err(de::Error::custom)?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// JSON null is "missing"; strings are unescaped (borrowed when they hold no escapes).
fn classify(raw: &RawValue) -> Result<Option<Value<'_>>, serde_json::Error> {
    let s = raw.get();
    Ok(match s.as_bytes().first() {
        Some(b'"') => Some(Value::Str(serde_json::from_str::<Cow<str>>(s)?)),
        Some(b'n') => None,
        Some(b't') => Some(Value::Bool(true)),
        Some(b'f') => Some(Value::Bool(false)),
        Some(b'[') => Some(Value::Array),
        Some(b'{') => Some(Value::Object),
        _ => Some(Value::Num(s)),
    })
}

/// Parses one line into raw fields; a syntax error names the column.
pub fn parse_line(line: &str) -> Result<RawFields<'_>, FieldError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let fields = de.deserialize_map(FieldsVisitor).map_err(|e| {
        let reason = match e.classify() {
            serde_json::error::Category::Data => e.to_string(),
            _ => format!("malformed JSON: {e}"),
        };
        FieldError::new("(line)", reason)
    })?;
    de.end().map_err(|e| {
        FieldError::new(
            "(line)",
            format!("malformed JSON: trailing characters after the object ({e})"),
        )
    })?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_picked_and_typed() {
        let f = parse_line(r#"{"userId":"u1","price":699,"reviewText":"好\"用\"","extra":[1,2],"reviewRating":null}"#)
            .unwrap();
        assert_eq!(f[Field::UserId as usize], Some(Value::Str("u1".into())));
        assert_eq!(f[Field::Price as usize], Some(Value::Num("699")));
        assert_eq!(
            f[Field::ReviewText as usize],
            Some(Value::Str("好\"用\"".into()))
        );
        assert_eq!(f[Field::ReviewRating as usize], None);
    }

    #[test]
    fn syntax_errors_and_shape_errors_are_reported() {
        let table = [
            (r#"{"userId": "u1", "price": }"#, "malformed JSON"),
            (r#"[1,2,3]"#, "a JSON object"),
            (r#"{"userId":"u1"} {"userId":"u2"}"#, "trailing characters"),
            (
                r#"{"userId":"u1","userId":"u2"}"#,
                "duplicate field `userId`",
            ),
            (r#"{"userId":"u1""#, "malformed JSON"),
        ];
        for (line, want) in table {
            let e = parse_line(line).unwrap_err();
            assert_eq!(e.field, "(line)");
            assert!(e.reason.contains(want), "{line}: {}", e.reason);
        }
    }
}
