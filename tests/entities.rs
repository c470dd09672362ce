//! The price parser against the 1,191 real price strings (with expected amounts) that the `price-parser`
//! package's test suite ships, read straight from its pinned sdist.

mod common;

use dongcha::nlp::entities::parse_price;

/// One `Example(currency_raw, price_raw, currency, amount_text, amount, ...)` call.
struct Example {
    list: String,
    price_raw: String,
    amount: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num(f64),
    None,
}

/// Parses the Python literals of an argument list: strings (with \x / \u escapes), numbers, None and
/// Decimal("..."); keyword arguments are skipped. Returns the positional values and the end offset.
fn parse_args(s: &str) -> (Vec<Lit>, usize) {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let mut depth = 0;
    let mut keyword = false;
    while i < b.len() {
        let c = b[i];
        match c {
            '"' | '\'' => {
                let q = c;
                let mut v = String::new();
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == '\\' && i + 1 < b.len() {
                        i += 1;
                        match b[i] {
                            'x' => {
                                let h: String = b[i + 1..i + 3].iter().collect();
                                v.push(
                                    char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap(),
                                );
                                i += 2;
                            }
                            'u' => {
                                let h: String = b[i + 1..i + 5].iter().collect();
                                v.push(
                                    char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap(),
                                );
                                i += 4;
                            }
                            'n' => v.push('\n'),
                            other => v.push(other),
                        }
                    } else {
                        v.push(b[i]);
                    }
                    i += 1;
                }
                if depth == 0 && !keyword {
                    out.push(Lit::Str(v));
                } else if depth == 1
                    && !keyword
                    && let Ok(x) = v.parse()
                {
                    // Decimal("...")
                    out.push(Lit::Num(x));
                }
            }
            '#' => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '(' => depth += 1,
            ')' if depth == 0 => return (out, i),
            ')' => depth -= 1,
            ',' if depth == 0 => keyword = false,
            '=' if depth == 0 => {
                keyword = true;
            }
            c if (c.is_ascii_digit()
                || ((c == '-' || c == '.') && b.get(i + 1).is_some_and(char::is_ascii_digit)))
                && depth == 0
                && !keyword =>
            {
                let start = i;
                while i + 1 < b.len()
                    && (b[i + 1].is_ascii_digit() || matches!(b[i + 1], '.' | 'e' | '_'))
                {
                    i += 1;
                }
                let t: String = b[start..=i].iter().filter(|c| **c != '_').collect();
                match t.parse() {
                    Ok(x) => out.push(Lit::Num(x)),
                    Err(_) => panic!("not a number: {t:?} in {:?}", &s[..s.len().min(120)]),
                }
            }
            'N' if depth == 0 && !keyword && b[i..].starts_with(&['N', 'o', 'n', 'e']) => {
                out.push(Lit::None);
                i += 3;
            }
            _ => {}
        }
        i += 1;
    }
    (out, b.len())
}

fn examples(source: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut list = String::new();
    let mut rest = source;
    while let Some(pos) = rest.find("Example(") {
        // The list an example belongs to: the last `NAME = [` before it.
        if let Some(l) = rest[..pos]
            .lines()
            .rev()
            .find(|l| l.starts_with("PRICE_PARSING_") && l.contains("= ["))
        {
            list = l.split_whitespace().next().unwrap_or("").to_string();
        }
        let line_start = rest[..pos].rfind('\n').map_or(0, |i| i + 1);
        if rest[line_start..pos].contains('#') {
            // commented out
            rest = &rest[pos + "Example(".len()..];
            continue;
        }
        let body = &rest[pos + "Example(".len()..];
        let (args, end) = parse_args(body);
        let consumed: usize = body.chars().take(end).map(char::len_utf8).sum();
        rest = &body[consumed..];
        if list.is_empty() || args.len() < 5 {
            continue; // the class definition, not an example
        }
        let Lit::Str(price_raw) = &args[1] else {
            continue;
        };
        let amount = match &args[4] {
            Lit::Num(x) => Some(*x),
            _ => None,
        };
        out.push(Example {
            list: list.clone(),
            price_raw: price_raw.clone(),
            amount,
        });
    }
    out
}

#[test]
fn the_price_parser_reads_price_parsers_real_examples() {
    let file = common::asset_file("price-parser-examples", "test_price_parsing.py");
    let source = std::fs::read_to_string(file).unwrap();
    let all = examples(&source);
    assert!(all.len() >= 1170, "read {} examples", all.len());
    let mut per_list: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let mut misses = Vec::new();
    for e in &all {
        let got = parse_price(&e.price_raw).map(|p| p.amount);
        let ok = match (got, e.amount) {
            (None, None) => true,
            (Some(g), Some(x)) => (g - x).abs() <= 1e-9 * x.abs().max(1.0),
            _ => false,
        };
        let entry = per_list.entry(e.list.as_str()).or_default();
        entry.1 += 1;
        if ok {
            entry.0 += 1;
        } else if !e.list.contains("XFAIL") {
            misses.push(format!(
                "{:?} expected {:?} got {got:?}",
                e.price_raw, e.amount
            ));
        }
    }
    let (mut ok, mut n, mut ok_x, mut n_x) = (0, 0, 0, 0);
    for (list, (k, total)) in &per_list {
        println!(
            "{list:<52} {k:>4} / {total:<4} {:.1}%",
            100.0 * *k as f64 / *total as f64
        );
        if list.contains("XFAIL") {
            ok_x += k;
            n_x += total;
        } else {
            ok += k;
            n += total;
        }
    }
    let rate = ok as f64 / n as f64;
    println!(
        "price-parser's passing examples: {ok} / {n} = {:.1}%",
        100.0 * rate
    );
    println!("its own known failures (xfail): {ok_x} / {n_x}");
    println!(
        "first misses:\n  {}",
        misses
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // price-parser passes all of these, helped by currency and decimal-separator hints for some; we
    // read the string alone. Measured: 1,034 / 1,043 (99.1%); the misses are the strings that need
    // those hints (" 423.923 KD" read as Kuwaiti fils, "1250€ 60" with € as the decimal point). 98%
    // leaves room for one deliberate trade-off, not for a regression in a common format.
    assert!(rate >= 0.98, "match rate {rate:.3}");
}
