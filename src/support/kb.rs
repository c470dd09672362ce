//! The shop's knowledge base as files: Markdown entries with TOML front matter (`+++` … `+++`, as Hugo
//! and Zola write it) and TSV exports of a FAQ spreadsheet (`id<TAB>lang<TAB>question<TAB>answer`; rows sharing an
//! id and language are phrasings of one entry, whose answer is the first row's that has one). Every
//! error names the file and, for TSV, the line.

use std::path::Path;

use serde::Deserialize;

use crate::store::support::KbRow;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// One answer in one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// "zh" or "en".
    pub lang: String,
    pub questions: Vec<String>,
    pub answer: String,
    pub tags: Vec<String>,
    /// The file it came from.
    pub source: String,
}

impl Entry {
    pub fn into_row(self) -> KbRow {
        let digest = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                serde_json::to_string(&(&self.questions, &self.answer, &self.tags))
                    .unwrap_or_default()
                    .as_bytes()
            )
        );
        KbRow {
            id: self.id,
            lang: self.lang,
            questions: self.questions,
            answer: self.answer,
            tags: self.tags,
            source: self.source,
            digest,
        }
    }

    pub fn from_row(r: KbRow) -> Self {
        Self {
            id: r.id,
            lang: r.lang,
            questions: r.questions,
            answer: r.answer,
            tags: r.tags,
            source: r.source,
        }
    }
}

/// The demo shop's knowledge base (zh and en), imported by `dongcha demo`.
pub const DEMO_TSV: &str = include_str!("../../prompts/kb_demo.tsv");

/// "zh", "zh-CN", "zh_Hans" → "zh"; "en", "en-US" → "en"; anything else is refused.
pub fn language(code: &str) -> Option<&'static str> {
    let c = code.trim().to_lowercase();
    if c == "zh" || c.starts_with("zh-") || c.starts_with("zh_") {
        Some("zh")
    } else if c == "en" || c.starts_with("en-") || c.starts_with("en_") {
        Some("en")
    } else {
        None
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A TSV export: header `id<TAB>lang<TAB>question<TAB>answer` (an optional fifth column `tags`, comma-separated).
pub fn parse_tsv(path: &str, text: &str) -> Result<Vec<Entry>, KbError> {
    let line_err = |line: usize, reason: String| KbError::Line {
        path: path.to_string(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, h)| h.trim_start_matches('\u{feff}').trim_end_matches('\r'))
        .unwrap_or("");
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let with_tags = match cols.as_slice() {
        ["id", "lang", "question", "answer"] => false,
        ["id", "lang", "question", "answer", "tags"] => true,
        _ => {
            return Err(line_err(
                1,
                format!(
                    "the header must be `id<TAB>lang<TAB>question<TAB>answer[<TAB>tags]`, found {header:?}"
                ),
            ));
        }
    };
    // Entries in the order their id first appears; the line each started on.
    let mut out: Vec<(Entry, usize)> = Vec::new();
    for (i, raw) in lines {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != cols.len() {
            return Err(line_err(
                n,
                format!("{} columns, the header has {}", f.len(), cols.len()),
            ));
        }
        let id = f[0].trim();
        if !valid_id(id) {
            return Err(line_err(
                n,
                format!("id {id:?}: use letters, digits, '_', '-' or '.'"),
            ));
        }
        let lang =
            language(f[1]).ok_or_else(|| line_err(n, format!("lang {:?}: use zh or en", f[1])))?;
        let question = f[2].trim();
        if question.is_empty() {
            return Err(line_err(n, "the question is empty".into()));
        }
        let answer = f[3].trim().replace("\\n", "\n");
        let tags: Vec<String> = if with_tags {
            f[4].split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        match out.iter_mut().find(|(e, _)| e.id == id && e.lang == lang) {
            Some((e, _)) => {
                if !e.questions.iter().any(|q| q == question) {
                    e.questions.push(question.to_string());
                }
                if e.answer.is_empty() {
                    e.answer = answer;
                }
                for t in tags {
                    if !e.tags.contains(&t) {
                        e.tags.push(t);
                    }
                }
            }
            None => out.push((
                Entry {
                    id: id.to_string(),
                    lang: lang.to_string(),
                    questions: vec![question.to_string()],
                    answer,
                    tags,
                    source: path.to_string(),
                },
                n,
            )),
        }
    }
    out.into_iter()
        .map(|(e, n)| {
            if e.answer.is_empty() {
                Err(line_err(
                    n,
                    format!(
                        "entry {} ({}) has no answer on any of its rows",
                        e.id, e.lang
                    ),
                ))
            } else {
                Ok(e)
            }
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    id: String,
    lang: String,
    questions: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A Markdown entry: TOML front matter between `+++` lines (id, lang, questions, tags), then the answer.
pub fn parse_markdown(path: &str, text: &str) -> Result<Entry, KbError> {
    let err = |reason: String| KbError::File {
        path: path.to_string(),
        reason,
    };
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let rest = text
        .strip_prefix("+++\n")
        .ok_or_else(|| err("no front matter: the file must start with a `+++` line".into()))?;
    let (front, body) = rest
        .split_once("\n+++\n")
        .or_else(|| rest.strip_suffix("\n+++").map(|f| (f, "")))
        .ok_or_else(|| err("the front matter has no closing `+++` line".into()))?;
    let fm: FrontMatter =
        toml::from_str(front).map_err(|e| err(format!("front matter: {}", e.message())))?;
    if !valid_id(fm.id.trim()) {
        return Err(err(format!(
            "id {:?}: use letters, digits, '_', '-' or '.'",
            fm.id
        )));
    }
    let lang =
        language(&fm.lang).ok_or_else(|| err(format!("lang {:?}: use zh or en", fm.lang)))?;
    let questions: Vec<String> = fm
        .questions
        .iter()
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .collect();
    if questions.is_empty() {
        return Err(err("questions: list at least one phrasing".into()));
    }
    let answer = body.trim().to_string();
    if answer.is_empty() {
        return Err(err(
            "the answer (the text after the front matter) is empty".into()
        ));
    }
    Ok(Entry {
        id: fm.id.trim().to_string(),
        lang: lang.to_string(),
        questions,
        answer,
        tags: fm.tags,
        source: path.to_string(),
    })
}

/// Entries from a `.md` or `.tsv` file, or from every such file under a folder (sorted by path). The
/// same id and language twice is an error naming both files.
pub fn load(path: &Path) -> Result<Vec<Entry>, KbError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| KbError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| KbError::Read {
                path: dir.display().to_string(),
                source,
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if matches!(p.extension().and_then(|x| x.to_str()), Some("md" | "tsv")) {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out: Vec<Entry> = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let text = read(f)?;
        let found = match f.extension().and_then(|x| x.to_str()) {
            Some("md") => vec![parse_markdown(&name, &text)?],
            Some("tsv") => parse_tsv(&name, &text)?,
            _ => {
                return Err(KbError::File {
                    path: name,
                    reason: "a knowledge base is .md or .tsv files".into(),
                });
            }
        };
        for e in found {
            if let Some(first) = out.iter().find(|o| o.id == e.id && o.lang == e.lang) {
                return Err(KbError::File {
                    path: name,
                    reason: format!("entry {} ({}) is also in {}", e.id, e.lang, first.source),
                });
            }
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err(KbError::File {
            path: path.display().to_string(),
            reason: "no knowledge-base entries (.md or .tsv files) found".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_rows_sharing_an_id_are_phrasings_and_the_answer_is_the_first_given() {
        let tsv = "id\tlang\tquestion\tanswer\n\
                   refund\tzh\t怎么退款？\t\n\
                   refund\tzh\t退款多久到账？\t退款在 1–3 个工作日内原路退回。\n\
                   refund\tzh\t钱什么时候退回来\t这一行的答案不用\n\
                   refund\ten\tHow do I get a refund?\tRefunds go back to the original payment in 1-3 working days.\n";
        let e = parse_tsv("faq.tsv", tsv).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].questions.len(), 3);
        assert_eq!(e[0].answer, "退款在 1–3 个工作日内原路退回。");
        assert_eq!((e[1].id.as_str(), e[1].lang.as_str()), ("refund", "en"));
    }

    #[test]
    fn tsv_errors_name_the_line() {
        let bad = [
            ("id\tlang\tquestion\n", "faq.tsv:1:"),
            (
                "id\tlang\tquestion\tanswer\nx\tfr\tq\ta\n",
                "faq.tsv:2: lang",
            ),
            (
                "id\tlang\tquestion\tanswer\nx\tzh\tq\n",
                "faq.tsv:2: 3 columns",
            ),
            (
                "id\tlang\tquestion\tanswer\nx\tzh\t\ta\n",
                "faq.tsv:2: the question",
            ),
            (
                "id\tlang\tquestion\tanswer\n\nx\tzh\tq\t\n",
                "faq.tsv:3: entry x (zh) has no answer",
            ),
            (
                "id\tlang\tquestion\tanswer\nx y\tzh\tq\ta\n",
                "faq.tsv:2: id",
            ),
        ];
        for (tsv, want) in bad {
            let e = parse_tsv("faq.tsv", tsv).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn markdown_front_matter_and_body() {
        let md = "+++\nid = \"invoice\"\nlang = \"zh-CN\"\nquestions = [\"能开发票吗？\", \"怎么开增值税发票\"]\ntags = [\"invoice\"]\n+++\n\n下单后在“我的订单”里申请电子发票。\n";
        let e = parse_markdown("kb/invoice.md", md).unwrap();
        assert_eq!(e.lang, "zh");
        assert_eq!(e.questions.len(), 2);
        assert_eq!(e.answer, "下单后在“我的订单”里申请电子发票。");
        for (md, want) in [
            ("id = 1\n", "no front matter"),
            ("+++\nid = \"x\"\n", "no closing"),
            (
                "+++\nid = \"x\"\nlang = \"zh\"\nquestions = []\n+++\nA\n",
                "questions",
            ),
            (
                "+++\nid = \"x\"\nlang = \"zh\"\nquestions = [\"q\"]\n+++\n\n",
                "the answer",
            ),
            (
                "+++\nid = \"x\"\nlang = \"zh\"\nquestion = [\"q\"]\n+++\nA\n",
                "front matter",
            ),
        ] {
            let e = parse_markdown("a.md", md).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should name {want:?}");
        }
    }

    #[test]
    fn the_demo_knowledge_base_covers_the_topics_in_both_languages() {
        let e = parse_tsv("demo", DEMO_TSV).unwrap();
        for topic in [
            "shipping_time",
            "couriers",
            "shipping_fee",
            "returns",
            "exchange",
            "refund",
            "warranty",
            "payment_methods",
            "payment_failed",
            "invoice",
            "change_address",
            "cancel_order",
            "coupons",
            "order_status",
        ] {
            for lang in ["zh", "en"] {
                let found = e.iter().find(|x| x.id == topic && x.lang == lang);
                assert!(
                    found.is_some_and(|x| x.questions.len() >= 3),
                    "{topic} ({lang}) with three phrasings"
                );
            }
        }
    }
}
