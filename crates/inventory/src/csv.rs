//! A strict reader of RFC 4180 CSV: fields separated by commas, optionally in double quotes (a
//! quote inside doubled), records ended by CRLF or LF. Errors name the line.
//!
//! Fields are borrowed from the text (only a quoted field with a doubled quote is copied), so
//! a million-line inventory is split without a million small allocations per column.

use std::borrow::Cow;

/// One record, with the line it starts on (1-based).
pub(crate) struct Record<'a> {
    pub line: usize,
    pub fields: Vec<Cow<'a, str>>,
}

/// Splits `text` into records. A blank line ends nothing and is skipped.
pub(crate) fn records(text: &str) -> Result<Vec<Record<'_>>, (usize, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let start = line;
        let mut fields: Vec<Cow<'_, str>> = Vec::new();
        // One field per turn; the record ends at a line end or the end of the text.
        loop {
            if b.get(i) == Some(&b'"') {
                i += 1;
                let mut owned: Option<String> = None;
                let mut seg = i;
                loop {
                    match b.get(i) {
                        None => return Err((start, "a quoted field is not closed".into())),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                            owned
                                .get_or_insert_with(String::new)
                                .push_str(&text[seg..=i]);
                            i += 2;
                            seg = i;
                        }
                        Some(b'"') => break,
                        Some(b'\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
                fields.push(match owned {
                    Some(mut s) => {
                        s.push_str(&text[seg..i]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&text[seg..i]),
                });
                i += 1;
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        continue;
                    }
                    Some(b'\r') if b.get(i + 1) == Some(&b'\n') => {
                        i += 2;
                        line += 1;
                        break;
                    }
                    Some(b'\n') => {
                        i += 1;
                        line += 1;
                        break;
                    }
                    None => break,
                    Some(_) => {
                        return Err((line, "text after a quoted field's closing quote".into()))
                    }
                }
            }
            let st = i;
            // To the next comma or line end; a CR not before LF is part of the field.
            let end = loop {
                match b.get(i) {
                    None => break None,
                    Some(b',') => break Some(b','),
                    Some(b'\n') => break Some(b'\n'),
                    Some(b'\r') if b.get(i + 1) == Some(&b'\n') => break Some(b'\r'),
                    Some(b'"') => return Err((line, "a quote inside an unquoted field".into())),
                    Some(_) => i += 1,
                }
            };
            fields.push(Cow::Borrowed(&text[st..i]));
            match end {
                Some(b',') => i += 1,
                Some(b'\r') => {
                    i += 2;
                    line += 1;
                    break;
                }
                Some(_) => {
                    i += 1;
                    line += 1;
                    break;
                }
                None => break,
            }
        }
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        out.push(Record {
            line: start,
            fields,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::records;

    fn split(t: &str) -> Vec<(usize, Vec<String>)> {
        records(t)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.line,
                    r.fields.into_iter().map(|f| f.into_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn fields_quotes_and_line_ends() {
        assert_eq!(
            split("a,b\r\n\"x,\"\"y\"\"\",\"multi\nline\"\n\n,\nlast,\"\""),
            vec![
                (1, vec!["a".to_string(), "b".into()]),
                (2, vec!["x,\"y\"".into(), "multi\nline".into()]),
                (5, vec!["".into(), "".into()]),
                (6, vec!["last".into(), "".into()]),
            ]
        );
        assert_eq!(
            split("a\rb,c"),
            vec![(1, vec!["a\rb".to_string(), "c".into()])]
        );
        assert_eq!(records("a,\"b").err().unwrap().0, 1);
        assert_eq!(
            records("x\na,b\"c").err().unwrap(),
            (2, "a quote inside an unquoted field".into())
        );
        assert_eq!(records("\"a\"b").err().unwrap().0, 1);
    }
}
