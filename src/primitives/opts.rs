//! Option maps checked strictly: unknown keys are errors with "did you mean", wrong types are
//! errors naming the key and the expected type.
//!
//! An option map is decoded into a typed struct ([`decode`]): the struct's fields are the keys
//! the primitive accepts (and what the reference lists for it), serde's defaults its defaults.
//! A field of type `Dynamic` takes any value as it is (a typed handle, or its id).
//!
//! A recipe's own steps check their option maps the same way with the global `options()`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};
use serde::de::DeserializeOwned;

use super::{did_you_mean, usage_err, usage_err_hint};

/// Decode `map`, the options of `func`, into `T`. A key `T` has no field for is refused with
/// "did you mean"; a value of the wrong type is refused naming its key (`volumes[0].size_gb`).
/// A key set to `()` counts as absent.
pub fn decode<T: DeserializeOwned>(func: &'static str, map: Map) -> Result<T, Box<EvalAltResult>> {
    check_keys(func, &map, keys::<T>())?;
    let map: Map = map.into_iter().filter(|(_, v)| !v.is_unit()).collect();
    let value = Dynamic::from_map(map);
    serde_path_to_error::deserialize(rhai::serde::DynamicDeserializer::new(&value)).map_err(
        |e: serde_path_to_error::Error<Box<EvalAltResult>>| {
            let key = e.path().to_string();
            match *e.into_inner() {
                EvalAltResult::ErrorMismatchOutputType(want, got, _) => usage_err(format!(
                    "{func}: option `{key}` must be {}, not {got}",
                    in_words(&want)
                )),
                other => usage_err(format!("{func}: option `{key}`: {other}")),
            }
        },
    )
}

/// The options of a wait: `timeout`, in seconds.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitOptions {
    pub timeout: Option<i64>,
}

/// A wait's `timeout` (`default_secs` when not given), which must be positive.
pub fn wait_timeout(
    func: &'static str,
    options: Map,
    default_secs: i64,
) -> Result<std::time::Duration, Box<EvalAltResult>> {
    let o: WaitOptions = decode(func, options)?;
    let secs = o.timeout.unwrap_or(default_secs);
    if secs <= 0 {
        return Err(usage_err(format!(
            "{func}: timeout must be a positive number of seconds"
        )));
    }
    Ok(std::time::Duration::from_secs(secs as u64))
}

/// A string option that must be one of `allowed` (refused with "did you mean").
pub fn one_of(
    func: &str,
    key: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, Box<EvalAltResult>> {
    let Some(v) = value else {
        return Ok(None);
    };
    if allowed.contains(&v.as_str()) {
        return Ok(Some(v));
    }
    let msg = format!(
        "{func}: option `{key}` is `{v}`, not one of {}",
        allowed.join(", ")
    );
    Err(match did_you_mean(&v, allowed.iter().copied()) {
        Some(s) => usage_err_hint(msg, format!("did you mean `{s}`?")),
        None => usage_err(msg),
    })
}

/// A required option: `Some`, or the error naming it.
pub fn required<T>(func: &str, key: &str, value: Option<T>) -> Result<T, Box<EvalAltResult>> {
    value.ok_or_else(|| usage_err(format!("{func}: option `{key}` is required")))
}

/// The keys an option struct accepts: its fields, as serde names them.
pub fn keys<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names = FieldNames(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// A deserializer that answers nothing and notes the fields the struct asks for.
struct FieldNames(&'static [&'static str]);

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(serde::de::Error::custom(
            "only the field names were asked for",
        ))
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not an option struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A Rust type as rhai names it in a type error, in words.
fn in_words(rust: &str) -> String {
    match rust {
        "bool" => "true or false".into(),
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => {
            "an integer".into()
        }
        "f32" | "f64" => "a number".into(),
        "string" | "&str" | "String" | "char" => "a string".into(),
        "array" | "Array" => "an array".into(),
        "map" | "Map" => "a map".into(),
        other if other.contains("Vec<") => "an array".into(),
        other if other.contains("Map<") => "a map".into(),
        other => other.to_string(),
    }
}

fn check_keys(func: &str, map: &Map, allowed: &[&str]) -> Result<(), Box<EvalAltResult>> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let msg = format!("{func}: unknown option `{key}`");
            return Err(match did_you_mean(key, allowed.iter().copied()) {
                Some(s) => usage_err_hint(msg, format!("did you mean `{s}`?")),
                None => usage_err_hint(msg, format!("{func} accepts: {}", allowed.join(", "))),
            });
        }
    }
    Ok(())
}

/// An HTTP header map (`#{ "X-Origin-Verify": secret }`): names are letters, digits and `-`;
/// values are strings or `Secret`s of letters, digits, `-` and `_`, at most 128 characters
/// (the load balancer's limit for a header it matches). Sorted by name.
pub fn header_pairs(func: &str, v: Dynamic) -> Result<Vec<(String, String)>, Box<EvalAltResult>> {
    let map = v.try_cast::<Map>().ok_or_else(|| {
        usage_err(format!(
            "{func}: headers are a map like #{{ \"X-Name\": value }}"
        ))
    })?;
    let mut out = Vec::new();
    for (name, value) in map {
        let name = name.to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(usage_err(format!(
                "{func}: `{name}` is not an HTTP header name (letters, digits, -)"
            )));
        }
        let value = match value.clone().try_cast::<super::ssm::Secret>() {
            Some(s) => s.reveal().to_string(),
            None => value.into_string().map_err(|t| {
                usage_err(format!(
                    "{func}: header {name} is a string or a Secret, not {t}"
                ))
            })?,
        };
        // Letters, digits, `-` and `_` only: the load balancer reads `*` and `?` in a value it
        // matches as wildcards (a value of `*` would let every request through).
        if value.is_empty()
            || value.len() > 128
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(usage_err(format!(
                "{func}: header {name}: the value must be 1 to 128 letters, digits, - or _"
            )));
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    /// Check `options`, the option map of a recipe's own step `function`, as primitives check
    /// theirs: every key of `required` is given (and not `()`), and any other key is one of
    /// `optional` — an unknown one is refused with "did you mean". Returns the map.
    ///
    /// ```rhai
    /// fn launch(o) {
    ///     let o = options(o, "team::launch", ["subnets"], ["spot"]);
    ///     let spot = if "spot" in o { o.spot } else { true };
    ///     [o.subnets, spot]
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn options(
        options: Map,
        function: &str,
        required: Array,
        optional: Array,
    ) -> Result<Map, Box<EvalAltResult>> {
        let names = |list: Array, which: &str| {
            list.into_iter()
                .map(|k| {
                    k.into_string().map_err(|t| {
                        usage_err(format!(
                            "options: the {which} keys of {function} are strings, not {t}"
                        ))
                    })
                })
                .collect::<Result<Vec<String>, _>>()
        };
        let required = names(required, "required")?;
        let optional = names(optional, "optional")?;
        let allowed: Vec<&str> = required
            .iter()
            .chain(optional.iter())
            .map(String::as_str)
            .collect();
        check_keys(function, &options, &allowed)?;
        for key in &required {
            if options.get(key.as_str()).is_none_or(Dynamic::is_unit) {
                return Err(usage_err(format!("{function}: option `{key}` is required")));
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Launch {
        image: Option<Dynamic>,
        #[serde(default)]
        spot: bool,
        #[serde(default)]
        disks: Vec<Disk>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Disk {
        size_gb: i64,
    }

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    fn message(e: impl std::ops::Deref<Target = EvalAltResult>) -> String {
        let EvalAltResult::ErrorRuntime(v, _) = &*e else {
            panic!("an error map")
        };
        let m = v.clone().cast::<Map>();
        let hint = m.get("hint").map(|h| format!(" / {h}")).unwrap_or_default();
        format!("{}{hint}", m["message"])
    }

    #[test]
    fn the_struct_is_the_list_of_keys() {
        assert_eq!(keys::<Launch>(), ["image", "spot", "disks", "type"]);
    }

    #[test]
    fn a_map_decodes_with_defaults_and_handles_pass_through() {
        let handle = Dynamic::from(std::time::Duration::from_secs(3));
        let l: Launch = decode("t::f", map(&[("image", handle), ("type", "x".into())])).unwrap();
        assert!(l.image.unwrap().is::<std::time::Duration>());
        assert!(!l.spot);
        assert_eq!(l.kind.as_deref(), Some("x"));
        let absent: Launch = decode("t::f", map(&[("image", Dynamic::UNIT)])).unwrap();
        assert!(absent.image.is_none() && absent.disks.is_empty());
        let disk = Dynamic::from_map(map(&[("size_gb", 8_i64.into())]));
        let one: Launch = decode("t::f", map(&[("disks", vec![disk].into())])).unwrap();
        assert_eq!(one.disks[0].size_gb, 8);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = decode::<Launch>("t::f", map(&[("spott", true.into())])).unwrap_err();
        assert_eq!(
            message(e),
            "t::f: unknown option `spott` / did you mean `spot`?"
        );
        let e = decode::<Launch>("t::f", map(&[("spot", "yes".into())])).unwrap_err();
        assert_eq!(
            message(e),
            "t::f: option `spot` must be true or false, not string"
        );
        let disk = Dynamic::from_map(map(&[("size_gb", "big".into())]));
        let e = decode::<Launch>("t::f", map(&[("disks", vec![disk].into())])).unwrap_err();
        assert_eq!(
            message(e),
            "t::f: option `disks[0].size_gb` must be an integer, not string"
        );
        let e = decode::<Launch>("t::f", map(&[("disks", "sda".into())])).unwrap_err();
        assert_eq!(
            message(e),
            "t::f: option `disks` must be an array, not string"
        );
        let e = decode::<Launch>("t::f", map(&[("disks", vec![Dynamic::from(1_i64)].into())]))
            .unwrap_err();
        assert_eq!(message(e), "t::f: option `disks[0]` must be a map, not i64");
        let e = required::<String>("t::f", "image", None).unwrap_err();
        assert_eq!(message(e), "t::f: option `image` is required");
    }

    #[test]
    fn a_recipe_step_checks_its_options_as_primitives_do() {
        let keys = |ks: &[&str]| ks.iter().map(|k| Dynamic::from(k.to_string())).collect();
        let check = |m: Map| api::options(m, "tier::launch_app", keys(&["net"]), keys(&["spot"]));
        let given = map(&[("net", 1_i64.into()), ("spot", true.into())]);
        assert_eq!(check(given.clone()).unwrap().len(), 2);
        let e = check(map(&[("net", 1_i64.into()), ("spott", true.into())])).unwrap_err();
        assert_eq!(
            message(e),
            "tier::launch_app: unknown option `spott` / did you mean `spot`?"
        );
        let e = check(map(&[("spot", true.into())])).unwrap_err();
        assert_eq!(message(e), "tier::launch_app: option `net` is required");
        let e = check(map(&[("net", Dynamic::UNIT)])).unwrap_err();
        assert_eq!(message(e), "tier::launch_app: option `net` is required");
        let e = api::options(given, "f", vec![Dynamic::from(1_i64)], Array::new()).unwrap_err();
        assert_eq!(
            message(e),
            "options: the required keys of f are strings, not i64"
        );
    }
}
