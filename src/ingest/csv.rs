//! CSV with a header row naming the brief's fields (RFC 4180 quoting; a quoted field may span lines, which
//! the line reader joins). Cells are strings; empty cells are missing values.

use std::borrow::Cow;

use super::fields::{FIELD_COUNT, Field, FieldError, RawFields, Value};

/// Column positions of the known fields, from the header row.
#[derive(Debug, Clone)]
pub struct Header {
    columns: Vec<Option<Field>>,
    pub unknown: Vec<String>,
}

impl Header {
    pub fn parse(line: &str) -> Result<Self, String> {
        let cells = split(line).map_err(|e| format!("header row: {e}"))?;
        let mut columns = Vec::with_capacity(cells.len());
        let mut unknown = Vec::new();
        let mut seen = [false; FIELD_COUNT];
        for c in &cells {
            let f = Field::from_name(c);
            if let Some(f) = f {
                if seen[f as usize] {
                    return Err(format!("header row names `{}` twice", f.name()));
                }
                seen[f as usize] = true;
            } else {
                unknown.push(c.to_string());
            }
            columns.push(f);
        }
        if !seen[Field::UserId as usize] {
            return Err(format!(
                "header row has no userId column (found: {})",
                cells
                    .iter()
                    .map(|c| c.as_ref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Self { columns, unknown })
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn parse_row<'a>(&self, line: &'a str) -> Result<RawFields<'a>, FieldError> {
        let cells = split(line).map_err(|e| FieldError::new("(line)", e))?;
        if cells.len() != self.columns.len() {
            return Err(FieldError::new(
                "(line)",
                format!(
                    "expected {} columns as in the header, found {}",
                    self.columns.len(),
                    cells.len()
                ),
            ));
        }
        let mut fields: RawFields<'a> = Default::default();
        for (cell, col) in cells.into_iter().zip(&self.columns) {
            if let Some(f) = col
                && !cell.trim().is_empty()
            {
                fields[*f as usize] = Some(Value::Str(cell));
            }
        }
        Ok(fields)
    }
}

/// Splits one record into cells; doubled quotes inside a quoted cell stand for one quote.
pub fn split(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut cells = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'"' {
            // Quoted cell.
            let mut owned: Option<String> = None;
            let start = i + 1;
            let mut j = start;
            loop {
                match memchr::memchr(b'"', &bytes[j..]) {
                    None => {
                        return Err(format!(
                            "unterminated quoted field starting at column {}",
                            i + 1
                        ));
                    }
                    Some(k) => {
                        let q = j + k;
                        if bytes.get(q + 1) == Some(&b'"') {
                            owned.get_or_insert_with(String::new).push_str(&line[j..=q]);
                            j = q + 2;
                        } else {
                            let cell = match owned {
                                Some(mut o) => {
                                    o.push_str(&line[j..q]);
                                    Cow::Owned(o)
                                }
                                None => Cow::Borrowed(&line[start..q]),
                            };
                            cells.push(cell);
                            i = q + 1;
                            break;
                        }
                    }
                }
            }
            match bytes.get(i) {
                None => return Ok(cells),
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(format!(
                        "unexpected character after a closing quote at column {}",
                        i + 1
                    ));
                }
            }
        } else {
            let end = memchr::memchr(b',', &bytes[i..]).map_or(bytes.len(), |k| i + k);
            let cell = &line[i..end];
            if cell.contains('"') {
                return Err(format!(
                    "stray quote in an unquoted field at column {}",
                    i + 1
                ));
            }
            cells.push(Cow::Borrowed(cell));
            if end == bytes.len() {
                return Ok(cells);
            }
            i = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let table: &[(&str, &[&str])] = &[
            ("a,b,c", &["a", "b", "c"]),
            ("a,,c,", &["a", "", "c", ""]),
            (r#""x, y","say ""hi""",z"#, &["x, y", r#"say "hi""#, "z"]),
            ("\"multi\nline\",2", &["multi\nline", "2"]),
            ("", &[""]),
        ];
        for (line, want) in table {
            let got: Vec<String> = split(line)
                .unwrap()
                .into_iter()
                .map(|c| c.into_owned())
                .collect();
            assert_eq!(&got, want, "{line:?}");
        }
        assert!(split(r#""open,b"#).unwrap_err().contains("unterminated"));
        assert!(
            split(r#""a"b,c"#)
                .unwrap_err()
                .contains("after a closing quote")
        );
        assert!(split(r#"a"b,c"#).unwrap_err().contains("stray quote"));
    }

    #[test]
    fn header_maps_columns_and_requires_user_id() {
        let h = Header::parse("userId,price,colour,reviewText").unwrap();
        assert_eq!(h.unknown, vec!["colour"]);
        let row = h.parse_row("u1,699,red,").unwrap();
        assert_eq!(row[Field::Price as usize], Some(Value::Str("699".into())));
        assert_eq!(row[Field::ReviewText as usize], None);
        assert!(
            h.parse_row("u1,699")
                .unwrap_err()
                .reason
                .contains("expected 4 columns")
        );
        assert!(
            Header::parse("price,reviewText")
                .unwrap_err()
                .contains("no userId column")
        );
        assert!(
            Header::parse("userId,price,PRICE")
                .unwrap_err()
                .contains("twice")
        );
    }
}
