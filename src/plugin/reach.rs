//! `--mongodb-host`: how `whois` and `stats` reach an instance's MongoDB from outside the
//! cluster. The URI Secret names in-cluster hosts (a Service, a replica set's pods) that a
//! laptop cannot resolve; with `kubectl port-forward` to the database, the plugin connects to
//! the forwarded address instead, keeping everything else of the Secret's URI (user, password,
//! database, options). The password never has to be typed, so it stays out of shell history
//! and process lists.

use clap::Args;

use super::error::PluginError;

#[derive(Args, Debug, Default, Clone)]
pub struct Reach {
    /// Connect to HOST:PORT (e.g. a `kubectl port-forward` to the database) instead of the
    /// hosts in the instance's MongoDB URI, directly to that one server; the user, password,
    /// database and options still come from the URI Secret.
    #[arg(long, value_name = "HOST:PORT")]
    pub mongodb_host: Option<String>,
}

impl Reach {
    /// The URI to connect with: the Secret's `uri`, pointed at `--mongodb-host` when given.
    pub fn uri(&self, uri: &str) -> Result<String, PluginError> {
        match &self.mongodb_host {
            None => Ok(uri.to_string()),
            Some(host) => through(uri, host),
        }
    }
}

/// `uri` with its hosts replaced by `host`, as a direct connection (the driver would otherwise
/// go on to a replica set's members by their in-cluster names). A `mongodb+srv` URI becomes a
/// plain one, its implied TLS made explicit. Errors never quote the URI.
fn through(uri: &str, host: &str) -> Result<String, PluginError> {
    let bad_host = |why: &str| PluginError::MongoHost(format!("'{host}' {why}"));
    if host.is_empty() || host.contains(['/', '?', '@', ',', ' ']) {
        return Err(bad_host("is not a HOST:PORT"));
    }
    let unusable = || {
        PluginError::MongoHost(
            "the instance's MongoDB URI is not a mongodb:// or mongodb+srv:// URI".into(),
        )
    };
    let (scheme, rest) = uri.split_once("://").ok_or_else(unusable)?;
    let srv = match scheme {
        "mongodb" => false,
        "mongodb+srv" => true,
        _ => return Err(unusable()),
    };
    // The hosts end at the path or the options; a `/` or `?` in the user name or password
    // is percent-encoded (the URI format requires it).
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let credentials = authority.rsplit_once('@').map(|(user, _)| user);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut options: Vec<&str> = query
        .split('&')
        .filter(|o| !o.is_empty() && !has_key(o, "directConnection"))
        .collect();
    options.push("directConnection=true");
    if srv
        && !options
            .iter()
            .any(|o| has_key(o, "tls") || has_key(o, "ssl"))
    {
        options.push("tls=true");
    }
    let path = if path.is_empty() { "/" } else { path };
    let credentials = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    Ok(format!(
        "mongodb://{credentials}{host}{path}?{}",
        options.join("&")
    ))
}

/// Whether the URI option `option` (`key=value`) is `key`, which the URI format matches
/// without regard to case.
fn has_key(option: &str, key: &str) -> bool {
    option
        .split_once('=')
        .map_or(option, |(k, _)| k)
        .eq_ignore_ascii_case(key)
}

#[cfg(test)]
mod tests {
    use super::through;

    #[test]
    fn the_hosts_are_replaced_and_everything_else_kept() {
        let uri = "mongodb://app:p%2Fw@mongo-0.mongo.db.svc:27017,mongo-1.mongo.db.svc:27017/LibreChat?replicaSet=rs0&authSource=admin";
        assert_eq!(
            through(uri, "127.0.0.1:27017").unwrap(),
            "mongodb://app:p%2Fw@127.0.0.1:27017/LibreChat?replicaSet=rs0&authSource=admin&directConnection=true"
        );
    }

    #[test]
    fn a_uri_without_credentials_path_or_options_gets_a_direct_connection() {
        assert_eq!(
            through("mongodb://mongo:27017", "localhost:7017").unwrap(),
            "mongodb://localhost:7017/?directConnection=true"
        );
        assert_eq!(
            through(
                "mongodb://mongo:27017?directConnection=false",
                "localhost:7017"
            )
            .unwrap(),
            "mongodb://localhost:7017/?directConnection=true"
        );
    }

    #[test]
    fn srv_becomes_a_plain_uri_with_its_tls_explicit() {
        assert_eq!(
            through(
                "mongodb+srv://u:p@cluster0.example.net/LibreChat",
                "127.0.0.1:27017"
            )
            .unwrap(),
            "mongodb://u:p@127.0.0.1:27017/LibreChat?directConnection=true&tls=true"
        );
        assert_eq!(
            through("mongodb+srv://cluster0.example.net/?TLS=false", "h:1").unwrap(),
            "mongodb://h:1/?TLS=false&directConnection=true"
        );
    }

    #[test]
    fn refusals_never_quote_the_uri() {
        for (uri, host) in [
            ("mongodb://u:secret@h/db", "a/b"),
            ("mongodb://u:secret@h/db", ""),
            ("postgres://u:secret@h/db", "h:1"),
        ] {
            let e = through(uri, host).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
            assert!(e.contains("--mongodb-host"), "{e}");
        }
    }
}
