//! Typed stage parameters. One [`stage_params!`] declaration gives a stage the struct it reads
//! (`ctx.typed::<Params>()`), the [`crate::ParamSpec`] list planning checks pipelines against and
//! `mexa stages` prints, and the defaults planning fills in: a parameter's name, type, default
//! and doc are written once, in Rust.
//!
//! Invariant: a default's JSON form (`serde_json::to_value`) is what enters the artifact key
//! when a pipeline leaves the parameter out, so changing a default changes keys, as it should.
use crate::stage::ParamType;
use std::path::PathBuf;

/// How a Rust field type appears in a pipeline file.
pub trait ParamKind {
    fn param_type() -> ParamType;
}

/// A closed set of names (declared with [`param_enum!`]).
pub trait ParamEnum {
    const NAMES: &'static [&'static str];
}

macro_rules! kinds {
    ($($t:ty => $k:expr),* $(,)?) => {
        $(impl ParamKind for $t {
            fn param_type() -> ParamType {
                $k
            }
        })*
    };
}

kinds! {
    String => ParamType::Str,
    bool => ParamType::Bool,
    usize => ParamType::Int,
    u32 => ParamType::Int,
    u64 => ParamType::Int,
    i32 => ParamType::Int,
    i64 => ParamType::Int,
    f64 => ParamType::Float,
    PathBuf => ParamType::Path,
    Option<PathBuf> => ParamType::OptPath,
    Vec<String> => ParamType::StrList,
    Vec<i64> => ParamType::IntList,
    Vec<usize> => ParamType::IntList,
    serde_json::Value => ParamType::Any,
}

impl<T: ParamEnum> ParamKind for Vec<T> {
    fn param_type() -> ParamType {
        ParamType::EnumList(T::NAMES)
    }
}

/// A default written as a Rust value of the field's type, or a string literal for a
/// `String` field.
pub trait DefaultFrom<T> {
    fn default_from(t: T) -> Self;
}

impl<T> DefaultFrom<T> for T {
    fn default_from(t: T) -> T {
        t
    }
}

impl DefaultFrom<&'static str> for String {
    fn default_from(t: &'static str) -> String {
        t.to_string()
    }
}

/// Values a stage's parameters must hold beyond their types (declared in [`stage_params!`]'s
/// `check` block; none when it has none).
pub trait CheckValues {
    fn check_values(&self) -> Result<(), String>;
}

/// The JSON form of a default (see the module's invariant).
pub fn default_json<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).expect("a parameter default serializes")
}

/// A doc comment's text, its lines joined.
pub fn doc_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Declares a stage's parameters: a `Deserialize` struct (unknown fields rejected) and its
/// `specs()`. Each field is documented (the doc is what `mexa stages` prints) and written
///
/// ```text
/// name: Type [as Variant[(arg)]] [= default] [; execution | ; keyed_if_set]
/// ```
///
/// `as` overrides the pipeline type derived from the Rust type (`as Model`, or
/// `as EnumList(Pooling::NAMES)` for an enum defined outside mexa-pipeline); a field
/// without a default is required; `execution` marks a setting that changes speed, never
/// results, and stays out of the artifact key; `keyed_if_set` marks an option added later
/// whose default reproduces the stage's earlier output: at its default it stays out of the
/// key (existing artifacts stay valid), any other value enters it.
///
/// An optional `check(p) { ... }` block after the struct checks values that their types
/// allow but the stage cannot use (`margin_k: 0`, `memory: abc`); it returns
/// `Result<(), String>` and runs at plan time for every node, cached or not, so a bad
/// setting is reported with the pipeline's position before anything runs.
#[macro_export]
macro_rules! stage_params {
    (
        $(#[$smeta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $ty:ty
                $(as $pty:ident $(($parg:expr))?)?
                $(= $default:expr)?
                $(; $flag:ident)?
            ),* $(,)?
        }
        $(check($p:ident) $check:block)?
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, $crate::__serde::Deserialize)]
        #[serde(crate = "mexa_pipeline::__serde", deny_unknown_fields)]
        $vis struct $name {
            $(pub $field: $ty,)*
        }

        impl $name {
            /// The declared parameters, for planning and `mexa stages`.
            pub fn specs() -> Vec<$crate::ParamSpec> {
                vec![$(
                    $crate::ParamSpec {
                        name: stringify!($field),
                        ty: $crate::stage_params!(@ty $ty $(, $pty $(($parg))?)?),
                        default: $crate::stage_params!(@default $ty $(, $default)?),
                        doc: $crate::params::doc_text(&[$($doc),+]),
                        execution: $crate::stage_params!(@flag $($flag)?),
                        keyed_if_set: $crate::stage_params!(@keyed_if_set $($flag)?),
                    }
                ),*]
            }
        }

        impl $crate::params::CheckValues for $name {
            fn check_values(&self) -> Result<(), String> {
                $crate::stage_params!(@check self $(, $p, $check)?)
            }
        }
    };
    (@check $this:ident) => { Ok(()) };
    (@check $this:ident, $p:ident, $check:block) => {{
        let $p = $this;
        $check
    }};
    (@ty $ty:ty) => { <$ty as $crate::ParamKind>::param_type() };
    (@ty $ty:ty, $pty:ident) => { $crate::ParamType::$pty };
    (@ty $ty:ty, $pty:ident ($parg:expr)) => { $crate::ParamType::$pty($parg) };
    (@default $ty:ty) => { None };
    (@default $ty:ty, $default:expr) => {
        Some($crate::params::default_json(<$ty as $crate::params::DefaultFrom<_>>::default_from($default)))
    };
    (@flag) => { false };
    (@flag execution) => { true };
    (@flag keyed_if_set) => { false };
    (@keyed_if_set) => { false };
    (@keyed_if_set execution) => { false };
    (@keyed_if_set keyed_if_set) => { true };
}

/// Declares a closed set of names a parameter takes: the enum (serde by name), its `NAMES`,
/// `name()`, `Display`, `FromStr` and its pipeline type.
#[macro_export]
macro_rules! param_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $($(#[doc = $vdoc:literal])* $var:ident = $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive($crate::__serde::Serialize, $crate::__serde::Deserialize)]
        #[serde(crate = "mexa_pipeline::__serde")]
        $vis enum $name {
            $($(#[doc = $vdoc])* #[serde(rename = $text)] $var),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$var => $text),+
                }
            }
        }

        impl $crate::ParamEnum for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
        }

        impl $crate::ParamKind for $name {
            fn param_type() -> $crate::ParamType {
                $crate::ParamType::Enum(<$name as $crate::ParamEnum>::NAMES)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    format!("`{s}` is not one of {}", <$name as $crate::ParamEnum>::NAMES.join(", "))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::param_enum! {
        /// Test colours.
        pub enum Colour { Red = "red", DarkBlue = "dark_blue" }
    }

    crate::stage_params! {
        struct P {
            /// a required string
            name: String,
            /// a count
            /// over two lines
            n: usize = 4,
            /// colours
            colours: Vec<Colour> = vec![Colour::Red],
            /// a model
            model: String as Model = "m",
            /// threads
            threads: usize = 2; execution,
            /// added later
            extra: usize = 0; keyed_if_set,
        }
        check(p) {
            if p.n == 0 {
                return Err("`n` must be at least 1".into());
            }
            Ok(())
        }
    }

    #[test]
    fn specs_carry_types_defaults_docs_and_execution_flags() {
        let s = P::specs();
        let names: Vec<_> = s.iter().map(|p| p.name).collect();
        assert_eq!(names, ["name", "n", "colours", "model", "threads", "extra"]);
        assert_eq!(s[0].ty, ParamType::Str);
        assert!(s[0].default.is_none());
        assert_eq!(s[1].default, Some(serde_json::json!(4)));
        assert_eq!(s[1].doc, "a count over two lines");
        assert_eq!(s[2].ty, ParamType::EnumList(&["red", "dark_blue"]));
        assert_eq!(s[2].default, Some(serde_json::json!(["red"])));
        assert_eq!(s[3].ty, ParamType::Model);
        assert_eq!(s[3].default, Some(serde_json::json!("m")));
        assert!(s[4].execution && !s[3].execution);
        assert!(s[5].keyed_if_set && !s[5].execution && !s[4].keyed_if_set);
    }

    #[test]
    fn the_struct_reads_what_the_specs_declare_and_rejects_the_rest() {
        let p: P = serde_json::from_value(serde_json::json!({
            "name": "x", "n": 1, "colours": ["dark_blue"], "model": "m", "threads": 1, "extra": 0
        }))
        .unwrap();
        assert_eq!((p.name.as_str(), p.n, p.colours[0], p.threads, p.extra), ("x", 1, Colour::DarkBlue, 1, 0));
        assert_eq!(p.model, "m");
        assert_eq!(CheckValues::check_values(&p), Ok(()));
        let zero = P { n: 0, ..p };
        assert_eq!(CheckValues::check_values(&zero), Err("`n` must be at least 1".to_string()));
        let bad =
            serde_json::json!({"name": "x", "n": 1, "colours": [], "model": "m", "threads": 1, "extra": 0, "other": 0});
        assert!(serde_json::from_value::<P>(bad).is_err());
        assert_eq!("dark_blue".parse::<Colour>(), Ok(Colour::DarkBlue));
        assert_eq!("blue".parse::<Colour>().unwrap_err(), "`blue` is not one of red, dark_blue");
    }
}
