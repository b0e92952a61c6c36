//! Where requests go: the cluster's base URL (credentials moved out of it) and the request
//! targets, whose path segments are percent-encoded here so an id can never change the path.
//! The one query parameter that can be sent is `refresh=wait_for`: ES 8 answers 400 to any
//! parameter it does not know (DESIGN §4).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::secret::Secret;

/// Bytes left as they are in a path segment; everything else is `%XX`, as the official client
/// encoded ids (`demo::es_doc_path` and the tests' fault rules rely on this exact form). `:` of
/// a DID is encoded too, and `/ ? # %` and spaces can never end the segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'.')
    .remove(b',')
    .remove(b'*');

/// A request target below the base URL: an already encoded path, and whether to wait for a
/// refresh (the only query parameter gunsync ever sends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    path: String,
    wait_for_refresh: bool,
}

impl Endpoint {
    /// `/`: cluster info (`HEAD` for a ping).
    pub(super) fn root() -> Self {
        Self::at(String::new())
    }

    /// `/_cluster/health`.
    pub(super) fn cluster_health() -> Self {
        Self::at("_cluster/health".to_owned())
    }

    /// `/<index>/_doc/<id>`, each name one percent-encoded segment. The caller has refused the
    /// ids `.` and `..`, which URL parsing would resolve as dot-segments.
    pub(super) fn document(index: &str, id: &str) -> Self {
        Self::at(format!("{}/_doc/{}", encode(index), encode(id)))
    }

    /// Add `refresh=wait_for`: the answer comes once the change is visible to search.
    pub(super) fn wait_for_refresh(mut self) -> Self {
        self.wait_for_refresh = true;
        self
    }

    fn at(path: String) -> Self {
        Self {
            path,
            wait_for_refresh: false,
        }
    }

    /// The full URL under `base`, keeping a base path (ES behind a proxy at `/es/`) and
    /// dropping any query or fragment the base carried.
    pub(super) fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        url.set_path(&format!(
            "{}/{}",
            base.path().trim_end_matches('/'),
            self.path
        ));
        url.set_query(self.wait_for_refresh.then_some("refresh=wait_for"));
        url.set_fragment(None);
        url
    }
}

fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Basic-auth credentials, from the options or from the URL's user info.
#[derive(Clone)]
pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) password: Secret,
}

/// The URL without user info, and the credentials to send: `username`/`password` when a user
/// is configured, else the (percent-decoded) user info the URL held, else none.
pub(super) fn credentials(
    url: &Url,
    username: Option<&str>,
    password: Option<&Secret>,
) -> (Url, Option<Credentials>) {
    let (url, url_username, url_password) = split_credentials(url.clone());
    let credentials = match (username, url_username) {
        (Some(username), _) => Some(Credentials {
            username: username.to_owned(),
            password: password.cloned().unwrap_or_default(),
        }),
        (None, Some(username)) => Some(Credentials {
            username,
            password: url_password.unwrap_or_default(),
        }),
        (None, None) => None,
    };
    (url, credentials)
}

/// The URL without user info, and the user info (percent-decoded) it held.
fn split_credentials(mut url: Url) -> (Url, Option<String>, Option<Secret>) {
    let username = (!url.username().is_empty()).then(|| percent_decode(url.username()));
    let password = url.password().map(|p| Secret::from(percent_decode(p)));
    // Both setters only fail for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url, username, password)
}

/// `url` with its password, if any, replaced by `***` (brackets would be percent-encoded).
pub(super) fn redacted_url(url: &Url) -> Url {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url
}

/// `%XX` escapes decoded; invalid UTF-8 replaced rather than refused.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn ids_with_reserved_characters_stay_one_path_segment() {
        let es = base("http://es:9200");
        let cases = [
            ("did:gun:abc:1", "/records/_doc/did%3Agun%3Aabc%3A1"),
            ("a/b", "/records/_doc/a%2Fb"),
            ("a/../b", "/records/_doc/a%2F..%2Fb"),
            ("a?refresh=true", "/records/_doc/a%3Frefresh%3Dtrue"),
            ("a#frag", "/records/_doc/a%23frag"),
            ("100%", "/records/_doc/100%25"),
            ("%2e%2e", "/records/_doc/%252e%252e"),
            ("a b+c", "/records/_doc/a%20b%2Bc"),
            ("é", "/records/_doc/%C3%A9"),
            ("keep_-.,*", "/records/_doc/keep_-.,*"),
        ];
        for (id, path) in cases {
            let url = Endpoint::document("records", id).url(&es);
            assert_eq!(url.path(), path, "{id}");
            assert_eq!(url.query(), None, "{id}");
            assert_eq!(url.fragment(), None, "{id}");
            assert_eq!(
                url.path_segments().unwrap().count(),
                3,
                "{id} is one segment"
            );
        }
    }

    #[test]
    fn urls_keep_the_base_path_and_no_query_but_refresh() {
        let behind_proxy = base("https://proxy/es/?pretty#top");
        assert_eq!(
            Endpoint::document("records", "x")
                .url(&behind_proxy)
                .as_str(),
            "https://proxy/es/records/_doc/x"
        );
        assert_eq!(
            Endpoint::root().url(&behind_proxy).as_str(),
            "https://proxy/es/"
        );
        let es = base("http://es:9200/");
        assert_eq!(
            Endpoint::cluster_health().url(&es).as_str(),
            "http://es:9200/_cluster/health"
        );
        assert_eq!(
            Endpoint::document("records", "x")
                .wait_for_refresh()
                .url(&es)
                .as_str(),
            "http://es:9200/records/_doc/x?refresh=wait_for"
        );
    }

    #[test]
    fn credentials_in_the_url_are_moved_out_of_it() {
        let (url, user, password) = split_credentials(base("http://el%40stic:p%3Ass@es:9200/"));
        assert_eq!(url.as_str(), "http://es:9200/");
        assert_eq!(user.as_deref(), Some("el@stic"));
        assert_eq!(password.unwrap().expose(), "p:ss");
        let (url, user, password) = split_credentials(base("http://es:9200"));
        assert_eq!(url.as_str(), "http://es:9200/");
        assert!(user.is_none() && password.is_none());
    }

    #[test]
    fn configured_credentials_win_over_the_urls() {
        let in_url = || base("http://u:p@es:9200");
        let (url, chosen) = credentials(&in_url(), Some("elastic"), Some(&Secret::from("pw")));
        let chosen = chosen.unwrap();
        assert_eq!(url.as_str(), "http://es:9200/");
        assert_eq!(
            (chosen.username.as_str(), chosen.password.expose()),
            ("elastic", "pw")
        );
        let chosen = credentials(&in_url(), None, Some(&Secret::from("ignored")))
            .1
            .unwrap();
        assert_eq!(
            (chosen.username.as_str(), chosen.password.expose()),
            ("u", "p")
        );
        assert!(credentials(&base("http://es:9200"), None, None).1.is_none());
    }

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redacted_url(&base("http://u:hunter2@es:9200/")).as_str(),
            "http://u:***@es:9200/"
        );
        assert_eq!(
            redacted_url(&base("http://es:9200/")).as_str(),
            "http://es:9200/"
        );
    }
}
