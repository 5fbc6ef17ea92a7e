//! Query parameters as generators see them: the first value of each key, in order,
//! with the original's `debug=true` removed.

use std::fmt;

/// Parameters passed to dynamic generators (Python kwargs, executable env/stdin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// The reserved parameters of the HTTP API, pulled out of the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `debug=true` was given (exact value, as in the original).
    pub debug: bool,
    /// `reload=true` was given (Redis mode).
    pub reload: bool,
    /// Everything else, for the generators.
    pub params: Params,
}

impl Query {
    /// Parses a raw query string (`a=1&b=2`); repeated keys keep their first value.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        let Some(raw) = raw else { return q };
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k == "debug" && v == "true" {
                q.debug = true;
                continue;
            }
            if k == "reload" && v == "true" {
                q.reload = true;
                continue;
            }
            if !q.params.pairs.iter().any(|(key, _)| *key == k) {
                q.params.pairs.push((k.into_owned(), v.into_owned()));
            }
        }
        q
    }
}

impl Params {
    /// No parameters.
    pub fn empty() -> Params {
        Params::default()
    }

    /// Builds from pairs (first value of a repeated key wins).
    pub fn from_pairs<I, K, V>(pairs: I) -> Params
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut p = Params::default();
        for (k, v) in pairs {
            let k = k.into();
            if !p.pairs.iter().any(|(key, _)| *key == k) {
                p.pairs.push((k, v.into()));
            }
        }
        p
    }

    /// The pairs in request order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// A canonical form (sorted by key) for cache identity: `?a=1&b=2` equals `?b=2&a=1`.
    pub fn canonical(&self) -> Params {
        let mut pairs = self.pairs.clone();
        pairs.sort();
        Params { pairs }
    }

    /// As a JSON object (key order kept), for Python kwargs and executables' stdin.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter())
            .finish();
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_debug_removed() {
        let q = Query::parse(Some("x=y&x=z&debug=true&cluster=us%201"));
        assert!(q.debug);
        assert_eq!(
            q.params.pairs(),
            [("x".into(), "y".into()), ("cluster".into(), "us 1".into())]
        );
        let q = Query::parse(Some("debug=1"));
        assert!(!q.debug);
        assert_eq!(q.params.pairs(), [("debug".into(), "1".into())]);
    }
}
