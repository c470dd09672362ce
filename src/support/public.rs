//! A public, labelled question set for evaluating customer service on text nobody at dongcha wrote: the
//! intent sentences of Home Assistant's voice assistant (the `home-assistant-intents` package, Apache-2.0),
//! in Chinese and English. Each intent's sentences are templates — `(a|b)` alternatives, `[x]` optional
//! parts, `<rule>` expansion rules, `{list}` slots, `(a;b)` permutations — which [`expand`] turns into
//! plain sentences (a fixed, deterministic sample of each template's expansions).
//!
//! [`knowledge_base`] converts the set the way a shop's FAQ is built: one entry per intent, its phrasings
//! the sentences of every other template, its questions the sentences of the rest; a fifth of the intents
//! (by a fixed hash of the name) are left out of the knowledge base altogether and their sentences become
//! the out-of-scope questions (`none`).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::Entry;

#[derive(Debug, thiserror::Error)]
pub enum PublicSetError {
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    /// One of the alternatives (each a sequence); `optional` adds the empty one.
    Alt {
        options: Vec<Vec<Node>>,
        optional: bool,
    },
    Rule(String),
    Slot(String),
}

/// Parses a template into a sequence of nodes.
fn parse(t: &str) -> Vec<Node> {
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    let seq = parse_seq(&chars, &mut i, None);
    seq.into_iter().next().unwrap_or_default()
}

/// A sequence up to the closing `end`, split at `|` (and `;`, taken as a plain sequence) into
/// alternatives.
fn parse_seq(c: &[char], i: &mut usize, end: Option<char>) -> Vec<Vec<Node>> {
    let mut options = vec![Vec::new()];
    let mut text = String::new();
    let flush = |text: &mut String, seq: &mut Vec<Node>| {
        if !text.is_empty() {
            seq.push(Node::Text(std::mem::take(text)));
        }
    };
    while *i < c.len() {
        let ch = c[*i];
        *i += 1;
        match ch {
            ')' | ']' if Some(ch) == end => {
                flush(&mut text, options.last_mut().expect("one"));
                return options;
            }
            '|' => {
                flush(&mut text, options.last_mut().expect("one"));
                options.push(Vec::new());
            }
            ';' => text.push(' '),
            '(' | '[' => {
                flush(&mut text, options.last_mut().expect("one"));
                let close = if ch == '(' { ')' } else { ']' };
                let inner = parse_seq(c, i, Some(close));
                options.last_mut().expect("one").push(Node::Alt {
                    options: inner,
                    optional: ch == '[',
                });
            }
            '<' | '{' => {
                flush(&mut text, options.last_mut().expect("one"));
                let close = if ch == '<' { '>' } else { '}' };
                let mut name = String::new();
                while *i < c.len() && c[*i] != close {
                    name.push(c[*i]);
                    *i += 1;
                }
                *i += 1;
                // `{list:slot}` names the list first.
                let name = name
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                options.last_mut().expect("one").push(if ch == '<' {
                    Node::Rule(name)
                } else {
                    Node::Slot(name)
                });
            }
            _ => text.push(ch),
        }
    }
    flush(&mut text, options.last_mut().expect("one"));
    options
}

/// What fills a slot: the list's values (themselves templates), a number from a range, or a sample
/// value for the lists a home defines itself (names, areas) and free text.
struct Lists<'a> {
    lists: &'a serde_json::Map<String, Value>,
    rules: HashMap<String, Vec<Node>>,
    zh: bool,
}

impl Lists<'_> {
    fn slot(&self, name: &str, pick: u64) -> Vec<Node> {
        let sample = |zh: &[&str], en: &[&str]| {
            let v = if self.zh { zh } else { en };
            vec![Node::Text(v[(pick % v.len() as u64) as usize].to_string())]
        };
        match self.lists.get(name) {
            Some(l) if l.get("values").is_some() => {
                let values = l["values"].as_array().cloned().unwrap_or_default();
                if values.is_empty() {
                    return Vec::new();
                }
                let v = &values[(pick % values.len() as u64) as usize];
                let text = v
                    .get("in")
                    .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                    .or_else(|| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                parse(&text)
            }
            Some(l) if l.get("range").is_some() => {
                let r = &l["range"];
                let from = r["from"].as_i64().unwrap_or(0);
                let to = r["to"].as_i64().unwrap_or(100).max(from);
                let n = from + (pick as i64 * 7 + 3) % (to - from + 1);
                let unit = if r["type"] == "percentage" { "%" } else { "" };
                vec![Node::Text(format!("{n}{unit}"))]
            }
            _ => match name {
                "area" | "floor" | "zone" => sample(
                    &["客厅", "卧室", "厨房", "书房"],
                    &["living room", "bedroom", "kitchen", "office"],
                ),
                "name" => sample(
                    &["吸顶灯", "空调", "风扇", "电视"],
                    &["ceiling light", "air conditioner", "fan", "TV"],
                ),
                _ => sample(
                    &["牛奶", "晚饭好了", "明天开会"],
                    &["milk", "dinner is ready", "meeting tomorrow"],
                ),
            },
        }
    }

    /// One expansion of `seq`, each choice taken by a hash of `seed` and the choice's position.
    fn expand(&self, seq: &[Node], seed: u64, depth: usize, out: &mut String) {
        for (k, n) in seq.iter().enumerate() {
            let pick = xxhash_rust::xxh3::xxh3_64(
                &[
                    seed.to_le_bytes(),
                    (k as u64 + depth as u64 * 131).to_le_bytes(),
                ]
                .concat(),
            );
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Alt { options, optional } => {
                    let n = options.len() + usize::from(*optional);
                    let j = (pick % n as u64) as usize;
                    if j < options.len() {
                        self.expand(&options[j], pick, depth + 1, out);
                    }
                }
                Node::Rule(r) if depth < 12 => {
                    if let Some(body) = self.rules.get(r) {
                        self.expand(body, pick, depth + 1, out);
                    }
                }
                Node::Rule(_) => {}
                Node::Slot(s) if depth < 12 => {
                    let v = self.slot(s, pick);
                    self.expand(&v, pick, depth + 1, out);
                }
                Node::Slot(_) => {}
            }
        }
    }
}

/// Up to `n` distinct plain sentences of `template`.
fn expand(lists: &Lists<'_>, template: &str, n: usize) -> Vec<String> {
    let seq = parse(template);
    let mut out: Vec<String> = Vec::new();
    for seed in 0..(n as u64 * 4) {
        let mut s = String::new();
        lists.expand(
            &seq,
            xxhash_rust::xxh3::xxh3_64(template.as_bytes()) ^ seed,
            0,
            &mut s,
        );
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let s = if lists.zh { s.replace(' ', "") } else { s };
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
            if out.len() == n {
                break;
            }
        }
    }
    out
}

/// The set converted: knowledge-base entries and `(question, expected)` pairs (`none` for the intents
/// left out).
pub struct Converted {
    pub entries: Vec<Entry>,
    pub questions: Vec<(String, String)>,
}

fn left_out(intent: &str) -> bool {
    xxhash_rust::xxh3::xxh3_64(intent.as_bytes()).is_multiple_of(5)
}

/// One language file (`data/zh-CN.json`, `data/en.json`) of the package.
pub fn convert_language(
    file: &str,
    json: &str,
    lang: &str,
    out: &mut Converted,
) -> Result<(), PublicSetError> {
    let fail = |reason: String| PublicSetError::Format {
        file: file.to_string(),
        reason,
    };
    let v: Value = serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
    let empty = serde_json::Map::new();
    let lists = v["lists"].as_object().unwrap_or(&empty);
    let mut rules: HashMap<String, Vec<Node>> = v["expansion_rules"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(k, t)| (k.clone(), parse(t.as_str().unwrap_or_default())))
        .collect();
    let intents = v["intents"]
        .as_object()
        .ok_or_else(|| fail("no `intents` object".into()))?;
    let zh = lang == "zh";
    let mut by_intent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, intent) in intents {
        for data in intent["data"].as_array().into_iter().flatten() {
            // Some data blocks define rules of their own.
            for (k, t) in data["expansion_rules"].as_object().unwrap_or(&empty) {
                rules.insert(k.clone(), parse(t.as_str().unwrap_or_default()));
            }
            for t in data["sentences"].as_array().into_iter().flatten() {
                if let Some(t) = t.as_str() {
                    by_intent
                        .entry(name.as_str())
                        .or_default()
                        .push(t.to_string());
                }
            }
        }
    }
    let l = Lists { lists, rules, zh };
    for (intent, templates) in by_intent {
        if templates.len() < 2 {
            continue;
        }
        if left_out(intent) {
            for t in &templates {
                for s in expand(&l, t, 1) {
                    out.questions.push((s, "none".into()));
                }
            }
            continue;
        }
        // Even templates are the entry's phrasings, odd ones its questions: a question is never a
        // phrasing's template.
        let mut phrasings = Vec::new();
        for (k, t) in templates.iter().enumerate() {
            let s = expand(&l, t, 1);
            if k % 2 == 0 {
                phrasings.extend(s);
            } else {
                out.questions
                    .extend(s.into_iter().map(|q| (q, intent.to_string())));
            }
        }
        out.entries.push(Entry {
            id: intent.to_string(),
            lang: lang.to_string(),
            questions: phrasings,
            answer: format!("[{intent}]"),
            tags: Vec::new(),
            source: file.to_string(),
        });
    }
    Ok(())
}

/// The package's Chinese and English files under `dir` (the asset's folder), converted.
pub fn knowledge_base(dir: &std::path::Path) -> Result<Converted, PublicSetError> {
    let mut out = Converted {
        entries: Vec::new(),
        questions: Vec::new(),
    };
    for (file, lang) in [("zh-CN.json", "zh"), ("en.json", "en")] {
        let path = dir.join(file);
        let json = std::fs::read_to_string(&path).map_err(|e| PublicSetError::Format {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        convert_language(&path.display().to_string(), &json, lang, &mut out)?;
    }
    // An intent only one language keeps is still one entry; questions whose intent lost its entry in
    // both languages (too few templates) are dropped.
    let ids: std::collections::HashSet<String> = out.entries.iter().map(|e| e.id.clone()).collect();
    out.questions
        .retain(|(_, e)| e == "none" || ids.contains(e));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_to_plain_sentences() {
        let lists: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"color": {"values": [{"in": "(red|crimson)", "out": "red"}]},
                "brightness": {"range": {"type": "percentage", "from": 0, "to": 100}}}"#,
        )
        .unwrap();
        let mut rules = HashMap::new();
        rules.insert("the".to_string(), parse("(the|my)"));
        let l = Lists {
            lists: &lists,
            rules,
            zh: false,
        };
        let s = expand(&l, "turn [<the>] {area} lights {color:c}; now", 6);
        assert!(!s.is_empty());
        for x in &s {
            assert!(!x.contains(['(', '[', '<', '{', '|', ';']), "{x}");
            assert!(x.starts_with("turn ") && x.contains("lights"), "{x}");
            assert!(x.contains("red") || x.contains("crimson"), "{x}");
        }
        let b = expand(&l, "set brightness to {brightness}", 1);
        assert!(b[0].ends_with('%'), "{b:?}");
    }
}
