//! Classification reports: per-class precision, recall, F1 and support, accuracy, macro F1 and the
//! confusion matrix, printed like scikit-learn's `classification_report`.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub classes: Vec<ClassScores>,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub total: usize,
    /// confusion[gold][predicted], classes in the order given.
    pub confusion: Vec<Vec<usize>>,
    /// A second accuracy some tasks add (sentiment: positive vs negative without the neutral band).
    pub binary_accuracy: Option<f64>,
    pub binary_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassScores {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

impl Report {
    /// `pairs` are (gold, predicted) indexes into `classes`.
    pub fn new(classes: &[&str], pairs: &[(usize, usize)]) -> Self {
        let n = classes.len();
        let mut confusion = vec![vec![0usize; n]; n];
        for (g, p) in pairs {
            confusion[*g][*p] += 1;
        }
        let total = pairs.len();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let scores: Vec<ClassScores> = (0..n)
            .map(|c| {
                let tp = confusion[c][c];
                let predicted: usize = (0..n).map(|g| confusion[g][c]).sum();
                let support: usize = confusion[c].iter().sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    class: classes[c].to_string(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let present: Vec<&ClassScores> = scores.iter().filter(|c| c.support > 0).collect();
        let macro_f1 = present.iter().map(|c| c.f1).sum::<f64>() / present.len().max(1) as f64;
        Self {
            accuracy: ratio((0..n).map(|c| confusion[c][c]).sum(), total),
            classes: scores,
            macro_f1,
            total,
            confusion,
            binary_accuracy: None,
            binary_note: None,
        }
    }
}

impl Report {
    /// Support-weighted mean of a per-class score over the classes the set has.
    fn weighted(&self, score: fn(&ClassScores) -> f64) -> f64 {
        let n: usize = self.classes.iter().map(|c| c.support).sum();
        self.classes
            .iter()
            .map(|c| score(c) * c.support as f64)
            .sum::<f64>()
            / n.max(1) as f64
    }

    /// Unweighted mean of a per-class score over the classes the set has.
    fn macro_avg(&self, score: fn(&ClassScores) -> f64) -> f64 {
        let present: Vec<&ClassScores> = self.classes.iter().filter(|c| c.support > 0).collect();
        present.iter().map(|c| score(c)).sum::<f64>() / present.len().max(1) as f64
    }
}

/// Printed as scikit-learn's `classification_report` (per class, accuracy, macro and weighted
/// averages), then the confusion matrix. A class no text of the set is labelled with (sentiment's
/// neutral on a positive/negative set) has no precision or recall to report: it is left out of the
/// table and the matrix's rows, and a line says how many texts were predicted as it.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: Vec<&ClassScores> = self.classes.iter().filter(|c| c.support > 0).collect();
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>9} {:>9}",
            "", "precision", "recall", "f1-score", "support"
        )?;
        for c in &present {
            writeln!(
                f,
                "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>9}",
                c.class, c.precision, c.recall, c.f1, c.support
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>9.4} {:>9}",
            "accuracy", "", "", self.accuracy, self.total
        )?;
        for (name, avg) in [
            (
                "macro avg",
                Report::macro_avg as fn(&Report, fn(&ClassScores) -> f64) -> f64,
            ),
            ("weighted avg", Report::weighted),
        ] {
            writeln!(
                f,
                "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>9}",
                name,
                avg(self, |c| c.precision),
                avg(self, |c| c.recall),
                avg(self, |c| c.f1),
                self.total
            )?;
        }
        if let (Some(b), Some(note)) = (self.binary_accuracy, &self.binary_note) {
            writeln!(f, "{note}: {b:.4}")?;
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.support == 0 {
                let predicted: usize = self.confusion.iter().map(|row| row[i]).sum();
                writeln!(
                    f,
                    "{}: not scored — no text of this set is labelled {}; {predicted} were predicted {} \
                     (wrong in accuracy)",
                    c.class, c.class, c.class
                )?;
            }
        }
        writeln!(f)?;
        writeln!(f, "confusion (rows = gold, columns = predicted)")?;
        write!(f, "{:<12}", "")?;
        for c in &self.classes {
            write!(f, " {:>9}", c.class)?;
        }
        writeln!(f)?;
        for (g, row) in self.confusion.iter().enumerate() {
            if self.classes[g].support == 0 {
                continue;
            }
            write!(f, "{:<12}", self.classes[g].class)?;
            for v in row {
                write!(f, " {v:>9}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A positive/negative set scored with a three-class model: neutral has no labels, so no precision
    /// or recall is printed for it (it once showed 0.00 with support 0); what was predicted neutral is said.
    #[test]
    fn a_class_the_set_does_not_label_is_not_scored_but_counted() {
        // (gold, predicted): 0 negative, 1 neutral, 2 positive.
        let pairs = [
            (0, 0),
            (0, 0),
            (0, 1),
            (2, 2),
            (2, 0),
            (2, 2),
            (2, 2),
            (2, 1),
        ];
        let r = Report::new(&["negative", "neutral", "positive"], &pairs);
        let text = r.to_string();
        assert!(!text.lines().any(|l| l.starts_with("neutral ")), "{text}");
        assert!(
            text.contains("neutral: not scored — no text of this set is labelled neutral; 2 were predicted neutral"),
            "{text}"
        );
        // negative: precision 2/3, recall 2/3; positive: precision 1, recall 3/5.
        let (pn, rp) = (2.0 / 3.0, 3.0 / 5.0);
        let f1p = 2.0 * rp / (1.0 + rp);
        let macro_p = (pn + 1.0) / 2.0;
        let weighted_f1 = (3.0 * pn + 5.0 * f1p) / 8.0;
        let row = |name: &str| -> Vec<String> {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..]
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        assert_eq!(row("accuracy"), ["0.6250", "8"]);
        assert_eq!(row("macro avg")[0], format!("{macro_p:.4}"));
        assert_eq!(
            row("weighted avg")[2..],
            [format!("{weighted_f1:.4}"), "8".into()]
        );
    }
}
