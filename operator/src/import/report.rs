//! `import-report.md`: every key of the inputs with what became of it, and what is left to do.

use std::fmt::Write as _;

/// What became of one input key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Carried over, to the named manifest field or Secret key.
    Mapped(String),
    /// Not needed on Kubernetes, and why.
    NotNeeded(String),
    /// Not supported, why, and what to do instead.
    Unsupported(String),
}

impl Fate {
    /// A key this importer does not know, in `file` (`config.json`, `config.lua`).
    pub fn unknown(file: &str) -> Self {
        Self::Unsupported(format!(
            "not a {file} key this importer knows (nor, as far as its sources say, the EMS); not used"
        ))
    }
}

/// One key of one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `config.json` or `config.lua`.
    pub file: String,
    /// The key's path, e.g. `ws_connection.ping_rate` or `ws_servers[1].host`.
    pub key: String,
    /// What became of it.
    pub fate: Fate,
}

/// The whole report.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Every key read (a group's keys in the order the reader walks them: sorted).
    pub entries: Vec<Entry>,
    /// Things the user still has to do (values that could not be carried over).
    pub actions: Vec<String>,
}

impl Report {
    /// Records a key.
    pub fn add(&mut self, file: &str, key: impl Into<String>, fate: Fate) {
        self.entries.push(Entry {
            file: file.into(),
            key: key.into(),
            fate,
        });
    }

    /// The entry of `key` in `file`, if recorded.
    pub fn get(&self, file: &str, key: &str) -> Option<&Fate> {
        self.entries
            .iter()
            .find(|e| e.file == file && e.key == key)
            .map(|e| &e.fate)
    }

    /// Markdown: a summary, the actions, then one table per input file.
    pub fn render(&self, gateway: &str) -> String {
        let count = |f: fn(&Fate) -> bool| self.entries.iter().filter(|e| f(&e.fate)).count();
        let mut s = String::new();
        let _ = writeln!(s, "# Import report: EdgeGateway `{gateway}`\n");
        let _ = writeln!(
            s,
            "{} keys read: {} mapped, {} not needed on Kubernetes, {} not supported. Every key of \
             the inputs is listed below; nothing was dropped silently.\n",
            self.entries.len(),
            count(|f| matches!(f, Fate::Mapped(_))),
            count(|f| matches!(f, Fate::NotNeeded(_))),
            count(|f| matches!(f, Fate::Unsupported(_))),
        );
        if !self.actions.is_empty() {
            let _ = writeln!(s, "## Before applying\n");
            for a in &self.actions {
                let _ = writeln!(s, "- {a}");
            }
            s.push('\n');
        }
        let mut files: Vec<&str> = self.entries.iter().map(|e| e.file.as_str()).collect();
        files.dedup();
        for file in files {
            let _ = writeln!(
                s,
                "## `{file}`\n\n| key | outcome | detail |\n|---|---|---|"
            );
            for e in self.entries.iter().filter(|e| e.file == file) {
                let (outcome, detail) = match &e.fate {
                    Fate::Mapped(to) => ("mapped", to.as_str()),
                    Fate::NotNeeded(why) => ("not needed", why.as_str()),
                    Fate::Unsupported(why) => ("**not supported**", why.as_str()),
                };
                let _ = writeln!(
                    s,
                    "| `{}` | {outcome} | {} |",
                    e.key,
                    detail.replace('|', "\\|").replace("<gateway>", gateway)
                );
            }
            s.push('\n');
        }
        s
    }
}
