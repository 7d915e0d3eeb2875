//! How errors are said: each cause once. An error whose message already
//! quotes its source (`Hostaway: {0}`) would otherwise repeat it when the
//! chain is printed; a library error's own message often hides the cause
//! (`error sending request`) that only its innermost source names.

use std::error::Error;

/// The innermost cause of an error: what actually went wrong.
pub fn root_cause(err: &(dyn Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The messages of a chain joined by `: `, each dropped when the one before
/// already says it.
pub fn one_message<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not reach Hostaway for POST /v1/accessTokens: connection refused")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("Hostaway: {0}")]
    struct Outer(#[from] Inner);

    #[test]
    fn a_cause_quoted_by_its_wrapper_is_said_once() {
        let err = anyhow::Error::from(Outer(Inner)).context("sync failed");
        assert_eq!(
            one_message(err.chain()),
            "sync failed: Hostaway: could not reach Hostaway for POST /v1/accessTokens: \
             connection refused"
        );
        assert_eq!(
            root_cause(&Outer(Inner)),
            "could not reach Hostaway for POST /v1/accessTokens: connection refused"
        );
    }
}
