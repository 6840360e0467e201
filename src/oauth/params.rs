//! OAuth request parameters (a query string or a form body), read by hand
//! rather than into a serde struct: a repeated parameter must be a precise
//! OAuth error (RFC 6749 §3.1: parameters MUST NOT be included more than
//! once), not a generic rejection, while `resource` may legitimately repeat
//! (RFC 8707 §2). Parameters sent without a value are treated as omitted,
//! as §3.1 also asks.

use super::OAuthError;

/// The non-empty parameters of one request, in order.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` input. Never fails:
    /// invalid percent-encodings are kept as they are, invalid UTF-8 is
    /// replaced, as browsers do.
    pub fn parse(input: &[u8]) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(input)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that may appear at most once.
    pub fn single(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut values = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(Repeated(name.to_owned()));
        }
        Ok(first)
    }

    /// [`Params::single`], owned.
    pub fn single_owned(&self, name: &str) -> Result<Option<String>, Repeated> {
        self.single(name).map(|v| v.map(str::to_owned))
    }
}

/// A parameter that appeared more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated(pub String);

impl Repeated {
    pub fn message(&self) -> String {
        format!("the parameter {} appears more than once", self.0)
    }
}

impl From<Repeated> for OAuthError {
    fn from(r: Repeated) -> Self {
        OAuthError::invalid_request(r.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_empties_and_encodings() {
        let p = Params::parse(b"a=1&b=&resource=x&resource=y&c=%41+b&d=%zz");
        assert_eq!(p.single("a"), Ok(Some("1")));
        assert_eq!(p.single("b"), Ok(None), "empty is omitted");
        assert_eq!(p.single("missing"), Ok(None));
        assert_eq!(p.single("resource"), Err(Repeated("resource".into())));
        assert_eq!(p.all("resource").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(p.single("c"), Ok(Some("A b")));
        assert_eq!(p.single("d"), Ok(Some("%zz")));
        let empty_twice = Params::parse(b"state=&state=s");
        assert_eq!(empty_twice.single("state"), Ok(Some("s")));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever the values (any Unicode), encoding then parsing
            /// gives each one back, and a second occurrence of a name is
            /// always seen as a repeat.
            #[test]
            fn encoded_parameters_read_back_and_repeats_are_caught(
                params in prop::collection::btree_map("[a-z_]{1,12}", ".{1,20}", 1..6),
                repeat in any::<prop::sample::Index>(),
            ) {
                let encoded = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&params)
                    .finish();
                let parsed = Params::parse(encoded.as_bytes());
                for (k, v) in &params {
                    prop_assert_eq!(parsed.single(k), Ok(Some(v.as_str())));
                }
                let (k, v) = params.iter().nth(repeat.index(params.len())).unwrap();
                let twice = format!(
                    "{encoded}&{}",
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair(k, v)
                        .finish()
                );
                let reparsed = Params::parse(twice.as_bytes());
                prop_assert_eq!(reparsed.single(k), Err(Repeated(k.clone())));
            }
        }
    }
}
