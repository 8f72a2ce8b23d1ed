//! The metric list of `docs/operations.md` (its "Metrics" table) and a check of a real scrape
//! against it: every family served is listed with its type and label names, and every row of
//! the binary is served.

use std::collections::{BTreeMap, BTreeSet};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    /// The name as queried (`_total` on counters).
    pub name: String,
    /// `sidecar`, `operator` or `platform`.
    pub binary: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Label names (without `le` on histograms).
    pub labels: BTreeSet<String>,
}

/// The table of `docs/operations.md`.
pub fn documented() -> Vec<Documented> {
    parse_table(&repo_file("docs/operations.md"))
}

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the table under the `## Metrics` heading.
pub fn parse_table(doc: &str) -> Vec<Documented> {
    doc.lines()
        .skip_while(|l| l.trim() != "## Metrics")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert!(cells.len() >= 4, "a short metrics row: {l}");
            Documented {
                name: cells[0].trim_matches('`').to_owned(),
                binary: cells[1].to_owned(),
                kind: cells[2].to_owned(),
                labels: backticked(cells[3]).into_iter().collect(),
            }
        })
        .collect()
}

/// Families of a scrape (Prometheus or OpenMetrics text): queried name → (type, label names
/// seen on its samples, `le` left out).
pub fn scraped(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut families = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(family), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let name = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.to_owned()
            };
            types.insert(family.to_owned(), (name.clone(), kind.to_owned()));
            families.insert(name, (kind.to_owned(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let sample = &line[..end];
            let family = ["_total", "_bucket", "_count", "_sum", "_created"]
                .iter()
                .find_map(|s| sample.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(sample);
            let Some((name, _)) = types.get(family) else {
                continue;
            };
            if let Some((_, labels)) = families.get_mut(name) {
                labels.extend(label_names(&line[end..]).into_iter().filter(|l| l != "le"));
            }
        }
    }
    families
}

/// The label names of `{a="x",b="y"} 1`.
fn label_names(rest: &str) -> Vec<String> {
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut chars = body.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        names.push(name.trim_start_matches(',').to_owned());
        // The quoted value, with backslash escapes.
        if chars.next() != Some('"') {
            break;
        }
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    names
}

/// Compares `binary`'s scrape with the table; the differences, one a line, or `Ok`.
pub fn check_scrape(binary: &str, text: &str) -> Result<(), String> {
    let doc: BTreeMap<String, Documented> = documented()
        .into_iter()
        .filter(|d| d.binary == binary)
        .map(|d| (d.name.clone(), d))
        .collect();
    let served = scraped(text);
    let mut problems = Vec::new();
    for (name, (kind, labels)) in &served {
        match doc.get(name) {
            None => problems.push(format!("{name} ({kind}) is served but not in the table")),
            Some(d) if &d.kind != kind => {
                problems.push(format!("{name} is a {kind}, the table says {}", d.kind))
            }
            // Labels are only seen on families that have samples.
            Some(d) if !labels.is_empty() && labels != &d.labels => problems.push(format!(
                "{name} has labels {labels:?}, the table says {:?}",
                d.labels
            )),
            Some(_) => {}
        }
    }
    for name in doc.keys().filter(|n| !served.contains_key(*n)) {
        problems.push(format!("{name} is in the table but not served"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The metric names a query text (PromQL, a rule file, a dashboard) mentions: every
/// `edgeway_<binary>_...` word, a histogram's `_bucket`/`_sum`/`_count` series read as the
/// histogram when the table has it.
pub fn queried_names(text: &str, table: &[Documented]) -> BTreeSet<String> {
    let histograms: BTreeSet<&str> = table
        .iter()
        .filter(|d| d.kind == "histogram")
        .map(|d| d.name.as_str())
        .collect();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("edgeway_") {
        let preceded = rest[..at].chars().next_back().is_some_and(word);
        let end = rest[at..].find(|c| !word(c)).map_or(rest.len(), |e| at + e);
        let name = &rest[at..end];
        rest = &rest[end..];
        if preceded {
            continue;
        }
        let series = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|h| histograms.contains(h)))
            .unwrap_or(name);
        names.insert(series.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's alerts and dashboard query only metrics of the table (a renamed metric
    /// would leave an alert that never fires and an empty panel).
    #[test]
    fn the_alerts_and_the_dashboard_query_documented_metrics() {
        let table = documented();
        let known: BTreeSet<&str> = table.iter().map(|d| d.name.as_str()).collect();
        for file in [
            "charts/edgeway/files/alerts.yaml",
            "charts/edgeway/files/dashboard.json",
        ] {
            let names = queried_names(&repo_file(file), &table);
            assert!(names.len() >= 10, "{file}: only {names:?}");
            let unknown: Vec<&String> = names
                .iter()
                .filter(|n| !known.contains(n.as_str()))
                .collect();
            assert!(
                unknown.is_empty(),
                "{file} queries metrics not in docs/operations.md: {unknown:?}"
            );
        }
    }

    /// Every alert has its runbook: a `### <alert>` section of docs/operations.md, and the
    /// alert's `runbook_url` is that section's anchor.
    #[test]
    fn every_alert_has_a_runbook_section() {
        let rules = repo_file("charts/edgeway/files/alerts.yaml");
        let doc = repo_file("docs/operations.md");
        let alerts: Vec<&str> = rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert: "))
            .collect();
        let runbooks: Vec<&str> = rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
            .collect();
        assert!(alerts.len() >= 10, "{alerts:?}");
        assert_eq!(alerts.len(), runbooks.len(), "one runbook_url per alert");
        for (alert, url) in alerts.iter().zip(&runbooks) {
            assert_eq!(
                *url,
                format!("docs/operations.md#{}", alert.to_lowercase()),
                "{alert}"
            );
            assert!(
                doc.lines().any(|l| l == format!("### {alert}")),
                "docs/operations.md has no `### {alert}` runbook section"
            );
        }
        let sections = doc.lines().filter(|l| l.starts_with("### Edgeway")).count();
        assert_eq!(
            sections,
            alerts.len(),
            "a runbook section without its alert"
        );
    }

    #[test]
    fn query_names_are_words_and_histogram_series_their_histogram() {
        let table = parse_table(
            "## Metrics\n| `edgeway_x_h_seconds` | x | histogram | — | h |\n\
             | `edgeway_x_c_total` | x | counter | — | c |\n",
        );
        let q = "rate(edgeway_x_h_seconds_bucket[5m]) + edgeway_x_c_total / my_edgeway_y \
                 + edgeway_x_g_count";
        assert_eq!(
            queried_names(q, &table),
            BTreeSet::from([
                "edgeway_x_h_seconds".to_owned(),
                "edgeway_x_c_total".to_owned(),
                "edgeway_x_g_count".to_owned(),
            ])
        );
    }

    #[test]
    fn the_table_follows_the_naming_rules() {
        let rows = documented();
        assert!(rows.len() > 30, "{rows:?}");
        let mut seen = BTreeSet::new();
        for d in &rows {
            assert!(seen.insert(&d.name), "{} twice", d.name);
            assert!(
                d.name.starts_with(&format!("edgeway_{}_", d.binary)),
                "{} is not prefixed by its binary {}",
                d.name,
                d.binary
            );
            match d.kind.as_str() {
                "counter" => assert!(d.name.ends_with("_total"), "{}", d.name),
                "histogram" => assert!(d.name.ends_with("_seconds"), "{}", d.name),
                "gauge" => assert!(!d.name.ends_with("_total"), "{}", d.name),
                other => panic!("{}: unknown type {other}", d.name),
            }
        }
        // The concepts shared by the binaries carry one name.
        for binary in ["sidecar", "operator", "platform"] {
            let name = format!("edgeway_{binary}_certificate_not_after_timestamp_seconds");
            assert!(seen.contains(&name), "{name}");
        }
    }

    #[test]
    fn a_scrape_is_read_by_family_type_and_labels() {
        let text = "# HELP a_x X.\n# TYPE a_x counter\na_x_total{kind=\"b,\\\"c\",route=\"r\"} 1\n\
                    # TYPE a_h histogram\na_h_bucket{le=\"0.1\"} 0\na_h_count 0\na_h_sum 0\n\
                    # TYPE a_g gauge\n# UNIT a_g bytes\n";
        let s = scraped(text);
        assert_eq!(s["a_x_total"].0, "counter");
        assert_eq!(
            s["a_x_total"].1,
            BTreeSet::from(["kind".to_owned(), "route".to_owned()])
        );
        assert!(s["a_h"].1.is_empty());
        assert_eq!(s["a_g"].0, "gauge");
        assert!(check_scrape("sidecar", text).is_err());
    }
}
