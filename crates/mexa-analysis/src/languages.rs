//! Language labels across corpora and task results: FLORES-200 `xxx_Scrp`, ISO 639-3, and
//! UDHR's own codes (`cmn_hans`, `por_BR`). Labels are matched by exact label, then by
//! ISO 639-3 (individual languages folded into their macrolanguage) and script.

/// Individual languages → the macrolanguage code other datasets use for them.
const MACRO: &[(&str, &str)] = &[
    ("cmn", "zho"),
    ("arb", "ara"),
    ("swh", "swa"),
    ("zsm", "msa"),
    ("pes", "fas"),
    ("prs", "fas"),
    ("lvs", "lav"),
    ("khk", "mon"),
    ("uzn", "uzb"),
    ("azj", "aze"),
    ("npi", "nep"),
    ("plt", "mlg"),
    ("gaz", "orm"),
    ("ekk", "est"),
    ("als", "sqi"),
    ("pbt", "pus"),
    ("ydd", "yid"),
    ("quy", "que"),
    ("ory", "ori"),
    ("nob", "nor"),
    ("lit", "lit"),
];

/// A parsed label.
#[derive(Debug, Clone, PartialEq)]
pub struct Lang {
    pub label: String,
    /// ISO 639-3 (as given, or from the label's first part).
    pub iso: String,
    /// ISO 15924 script, title case, when the label has one (`Latn`, `Hans`).
    pub script: Option<String>,
}

impl Lang {
    /// Parses a label; `iso` overrides the code read from the label (e.g. from UDHR's table).
    pub fn parse(label: &str, iso: Option<&str>) -> Self {
        let mut parts = label.split(['_', '-']);
        let head = parts.next().unwrap_or("").to_ascii_lowercase();
        let script = parts.next().filter(|s| s.len() == 4 && s.chars().all(|c| c.is_ascii_alphabetic())).map(|s| {
            let mut c = s.chars();
            c.next().unwrap().to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
        });
        let iso = iso.filter(|s| !s.is_empty()).map(str::to_string).unwrap_or(if head.len() == 3 {
            head
        } else {
            String::new()
        });
        Self { label: label.to_string(), iso, script }
    }

    /// The code used for matching: macrolanguage where one applies.
    pub fn family(&self) -> &str {
        MACRO.iter().find(|(i, _)| *i == self.iso).map(|(_, m)| *m).unwrap_or(&self.iso)
    }
}

/// How a corpus language was matched to a task label.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub task_label: String,
    pub how: &'static str,
}

/// Finds the task label for `lang` among `candidates`: the same label; else the same
/// (macro)language and script; else the only candidate of that language; else, among several,
/// the only one not in Latin script (Belebele's romanised variants are the Latin ones).
pub fn match_language(lang: &Lang, candidates: &[Lang]) -> Option<Match> {
    if let Some(c) = candidates.iter().find(|c| c.label == lang.label) {
        return Some(Match { task_label: c.label.clone(), how: "label" });
    }
    if lang.iso.is_empty() {
        return None;
    }
    let mut same: Vec<&Lang> = candidates.iter().filter(|c| c.family() == lang.family()).collect();
    if let Some(s) = &lang.script {
        // A label that names its script never matches another script (Hans is not Hant).
        same.retain(|c| c.script.is_none() || c.script.as_ref() == Some(s));
        if let [one] = same[..] {
            return Some(Match { task_label: one.label.clone(), how: "iso639-3+script" });
        }
    }
    match same.len() {
        0 => None,
        1 => Some(Match { task_label: same[0].label.clone(), how: "iso639-3" }),
        _ => {
            let non_latin: Vec<&&Lang> = same.iter().filter(|c| c.script.as_deref() != Some("Latn")).collect();
            (non_latin.len() == 1)
                .then(|| Match { task_label: non_latin[0].label.clone(), how: "iso639-3 (non-Latin script)" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands() -> Vec<Lang> {
        [
            "eng_Latn", "fra_Latn", "zho_Hans", "zho_Hant", "hin_Deva", "hin_Latn", "sin_Latn", "sin_Sinh", "arb_Arab",
            "swh_Latn",
        ]
        .iter()
        .map(|l| Lang::parse(l, None))
        .collect()
    }

    fn m(label: &str, iso: Option<&str>) -> Option<String> {
        match_language(&Lang::parse(label, iso), &cands()).map(|m| m.task_label)
    }

    #[test]
    fn flores_udhr_and_iso_labels_meet() {
        assert_eq!(m("fra_Latn", None).as_deref(), Some("fra_Latn"));
        assert_eq!(m("fra", None).as_deref(), Some("fra_Latn"));
        assert_eq!(m("cmn_hans", Some("cmn")).as_deref(), Some("zho_Hans"));
        assert_eq!(m("hin", None).as_deref(), Some("hin_Deva"));
        assert_eq!(m("sin", None).as_deref(), Some("sin_Sinh"));
        assert_eq!(m("arb", None).as_deref(), Some("arb_Arab"));
        assert_eq!(m("swh", None).as_deref(), Some("swh_Latn"));
        assert_eq!(m("zho", None), None, "two non-Latin candidates: ambiguous");
        let only_hant = vec![Lang::parse("zho_Hant", None)];
        assert_eq!(match_language(&Lang::parse("cmn_hans", Some("cmn")), &only_hant), None, "Hans never matches Hant");
        assert_eq!(m("deu", None), None);
        assert_eq!(m("007", Some("")), None);
    }
}
