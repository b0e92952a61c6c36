//! The system resolver (getaddrinfo on a blocking thread, as reqwest's default), except that a
//! failure is a [`ResolveError`]: the one cause by which a refused lookup can be told from a
//! refused connection in reqwest's error chain.

use std::io;
use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A host name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {source}")]
pub(super) struct ResolveError {
    pub(super) host: String,
    #[source]
    pub(super) source: io::Error,
}

/// Resolves with the operating system, like reqwest's built-in resolver.
pub(super) struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's (or the scheme's) port on each address.
            let looked_up = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(Iterator::collect::<Vec<SocketAddr>>);
            match looked_up {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(source) => Err(Box::new(ResolveError { host, source }) as _),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_and_an_invalid_name_is_a_resolve_error() {
        let resolver = SystemResolver;
        let addrs: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");

        // RFC 6761: `.invalid` never resolves.
        let err = match resolver
            .resolve("gunsync-test.invalid".parse().unwrap())
            .await
        {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        let err = err.downcast::<ResolveError>().unwrap();
        assert!(
            err.to_string().starts_with("gunsync-test.invalid: "),
            "{err}"
        );
    }
}
