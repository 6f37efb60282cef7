//! What a stage's `resources:` may say to each executor: every executor with options declares
//! them here as typed specs (its name, and each option's name and type), and the pipeline
//! reader (`spec`, when the file is read) and the planner (`plan`, per grid cell once `${…}`
//! is substituted) check against this table only. Adding an executor with options is its own
//! file plus one row of [`EXECUTORS`].
use serde_json::Value;

/// The type an executor option's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// A string, or a number written where a string is meant (`time: 30`, `mem: 64`).
    Text,
    Integer,
    TextList,
}

impl OptionType {
    /// The type in words, as errors say it ("must be an integer").
    pub fn describe(self) -> &'static str {
        match self {
            OptionType::Text => "a string",
            OptionType::Integer => "an integer",
            OptionType::TextList => "a list of strings",
        }
    }

    /// Whether a value has this type.
    pub fn fits(self, v: &Value) -> bool {
        match self {
            OptionType::Integer => v.as_u64().is_some(),
            OptionType::TextList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            OptionType::Text => v.is_string() || v.is_number(),
        }
    }
}

/// One executor's options: `resources: {<name>: {<option>: value}}`.
#[derive(Debug)]
pub struct ExecutorOptions {
    pub name: &'static str,
    pub options: &'static [(&'static str, OptionType)],
}

impl ExecutorOptions {
    /// An option's type, if the executor has the option.
    pub fn option(&self, key: &str) -> Option<OptionType> {
        self.options.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.options.iter().map(|(k, _)| *k)
    }
}

/// Every executor that takes options.
pub const EXECUTORS: &[&ExecutorOptions] = &[&crate::slurm::OPTIONS];

/// The executor of that name, if it takes options.
pub fn executor(name: &str) -> Option<&'static ExecutorOptions> {
    EXECUTORS.iter().copied().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn option_types_take_what_their_words_say() {
        assert!(OptionType::Integer.fits(&json!(2)) && !OptionType::Integer.fits(&json!("2")));
        assert!(!OptionType::Integer.fits(&json!(-1)) && !OptionType::Integer.fits(&json!(1.5)));
        assert!(OptionType::Text.fits(&json!("02:00:00")) && OptionType::Text.fits(&json!(30)));
        assert!(!OptionType::Text.fits(&json!(["a"])));
        assert!(OptionType::TextList.fits(&json!(["--exclusive"])) && !OptionType::TextList.fits(&json!([1])));
        let slurm = executor("slurm").unwrap();
        assert_eq!(slurm.option("gpus"), Some(OptionType::Integer));
        assert_eq!(slurm.option("gpu"), None);
        assert!(executor("local").is_none());
    }
}
