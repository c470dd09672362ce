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

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>9} {:>9}",
            "class", "precision", "recall", "f1", "support"
        )?;
        for c in &self.classes {
            writeln!(
                f,
                "{:<10} {:>9.4} {:>9.4} {:>9.4} {:>9}",
                c.class, c.precision, c.recall, c.f1, c.support
            )?;
        }
        writeln!(f)?;
        writeln!(f, "accuracy   {:>9.4} {:>29}", self.accuracy, self.total)?;
        writeln!(f, "macro f1   {:>9.4}", self.macro_f1)?;
        if let (Some(b), Some(note)) = (self.binary_accuracy, &self.binary_note) {
            writeln!(f, "{note}: {b:.4}")?;
        }
        writeln!(f)?;
        writeln!(f, "confusion (rows = gold, columns = predicted)")?;
        write!(f, "{:<10}", "")?;
        for c in &self.classes {
            write!(f, " {:>9}", c.class)?;
        }
        writeln!(f)?;
        for (g, row) in self.confusion.iter().enumerate() {
            write!(f, "{:<10}", self.classes[g].class)?;
            for v in row {
                write!(f, " {v:>9}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
