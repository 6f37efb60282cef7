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

/// ISO 639-1 → ISO 639-3 (its macrolanguage code where one applies: `zh` → zho, `sw` → swa), as
/// lm-evaluation-harness names many tasks' languages (`xcopa_it`, `xnli_fr`). All 184 codes,
/// from the ISO 639-3 code table's Part1 column (pycountry 26.2.16).
const ISO639_1: &str = "\
aa:aar ab:abk ae:ave af:afr ak:aka am:amh an:arg ar:ara as:asm av:ava ay:aym az:aze ba:bak be:bel bg:bul \
bi:bis bm:bam bn:ben bo:bod br:bre bs:bos ca:cat ce:che ch:cha co:cos cr:cre cs:ces cu:chu cv:chv cy:cym \
da:dan de:deu dv:div dz:dzo ee:ewe el:ell en:eng eo:epo es:spa et:est eu:eus fa:fas ff:ful fi:fin fj:fij \
fo:fao fr:fra fy:fry ga:gle gd:gla gl:glg gn:grn gu:guj gv:glv ha:hau he:heb hi:hin ho:hmo hr:hrv ht:hat \
hu:hun hy:hye hz:her ia:ina id:ind ie:ile ig:ibo ii:iii ik:ipk io:ido is:isl it:ita iu:iku ja:jpn jv:jav \
ka:kat kg:kon ki:kik kj:kua kk:kaz kl:kal km:khm kn:kan ko:kor kr:kau ks:kas ku:kur kv:kom kw:cor ky:kir \
la:lat lb:ltz lg:lug li:lim ln:lin lo:lao lt:lit lu:lub lv:lav mg:mlg mh:mah mi:mri mk:mkd ml:mal mn:mon \
mr:mar ms:msa mt:mlt my:mya na:nau nb:nob nd:nde ne:nep ng:ndo nl:nld nn:nno no:nor nr:nbl nv:nav ny:nya \
oc:oci oj:oji om:orm or:ori os:oss pa:pan pi:pli pl:pol ps:pus pt:por qu:que rm:roh rn:run ro:ron ru:rus \
rw:kin sa:san sc:srd sd:snd se:sme sg:sag sh:hbs si:sin sk:slk sl:slv sm:smo sn:sna so:som sq:sqi sr:srp \
ss:ssw st:sot su:sun sv:swe sw:swa ta:tam te:tel tg:tgk th:tha ti:tir tk:tuk tl:tgl tn:tsn to:ton tr:tur \
ts:tso tt:tat tw:twi ty:tah ug:uig uk:ukr ur:urd uz:uzb ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid \
yo:yor za:zha zh:zho zu:zul";

/// The ISO 639-3 code of an ISO 639-1 code.
fn iso639_1(code: &str) -> Option<&'static str> {
    ISO639_1.split_whitespace().find_map(|p| p.strip_prefix(code)?.strip_prefix(':'))
}

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
        let (head, script) = mexa_core::language::split_label(label);
        let iso = iso.filter(|s| !s.is_empty()).map(str::to_string).unwrap_or(match head.len() {
            3 => head,
            2 => iso639_1(&head).unwrap_or_default().to_string(),
            _ => String::new(),
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

/// The labels among `corpus` that a code missing from it most likely meant: the same label in
/// another case (`ENG_latn` → `eng_Latn`); else the labels of the same (macro)language (`yor`,
/// `yor_Latin` → `yor_Latn`; `deu` → `deu_1901`, `deu_1996`), only those in the code's own
/// script when it names one the corpus has. Empty when nothing is that close.
pub fn did_you_mean(code: &Lang, corpus: &[Lang]) -> Vec<String> {
    let lower = code.label.to_lowercase();
    let cased: Vec<String> =
        corpus.iter().filter(|c| c.label.to_lowercase() == lower).map(|c| c.label.clone()).collect();
    if !cased.is_empty() || code.iso.is_empty() {
        return cased;
    }
    let same: Vec<&Lang> = corpus.iter().filter(|c| c.family() == code.family()).collect();
    let in_script: Vec<&Lang> =
        same.iter().copied().filter(|c| code.script.is_some() && c.script == code.script).collect();
    let pick = if in_script.is_empty() { same } else { in_script };
    pick.iter().map(|c| c.label.clone()).collect()
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

    #[test]
    fn codes_missing_from_a_corpus_get_their_likely_labels() {
        let flores = cands();
        let udhr: Vec<Lang> =
            [("eng", "eng"), ("deu_1901", "deu"), ("deu_1996", "deu"), ("mly_arab", "zlm"), ("cmn_hans", "cmn")]
                .iter()
                .map(|(l, iso)| Lang::parse(l, Some(iso)))
                .collect();
        let dym = |code: &str, corpus: &[Lang]| did_you_mean(&Lang::parse(code, None), corpus);
        assert_eq!(dym("ENG_latn", &flores), ["eng_Latn"]);
        assert_eq!(dym("fra", &flores), ["fra_Latn"]);
        assert_eq!(dym("fra_Latin", &flores), ["fra_Latn"]);
        assert_eq!(dym("hin", &flores), ["hin_Deva", "hin_Latn"]);
        assert_eq!(dym("hin_Deva", &[Lang::parse("hin_Latn", None), Lang::parse("hin_Deva", None)]), ["hin_Deva"]);
        assert_eq!(dym("zho_Hant", &flores), ["zho_Hant"]);
        assert_eq!(dym("cmn_Hant", &flores), ["zho_Hant"], "macrolanguage folded, script kept");
        assert_eq!(dym("swa", &flores), ["swh_Latn"]);
        assert_eq!(dym("deu", &udhr), ["deu_1901", "deu_1996"]);
        assert_eq!(dym("zlm", &udhr), ["mly_arab"]);
        assert_eq!(dym("zho_Hans", &udhr), ["cmn_hans"]);
        assert!(dym("spa", &udhr).is_empty());
        assert!(dym("xx", &flores).is_empty());
    }

    #[test]
    fn iso_639_1_codes_as_lm_eval_names_languages() {
        assert_eq!(m("fr", None).as_deref(), Some("fra_Latn"));
        assert_eq!(m("sw", None).as_deref(), Some("swh_Latn"), "sw is the Swahili macrolanguage");
        assert_eq!(m("ar", None).as_deref(), Some("arb_Arab"));
        assert_eq!(m("zh", None), None, "zho_Hans and zho_Hant: ambiguous, as zho");
        assert_eq!(Lang::parse("it", None).iso, "ita");
        assert_eq!(Lang::parse("ht", None).iso, "hat");
        assert_eq!(Lang::parse("zu", None).iso, "zul");
        assert_eq!(Lang::parse("jp", None).iso, "", "not an ISO 639-1 code: no guess");
        assert_eq!(ISO639_1.split_whitespace().count(), 184);
    }
}
