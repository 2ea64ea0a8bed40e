//! Reading a secret from a file (`client_secret_file:`, `api_token_file:`,
//! `scim_config.secret_file:`, `store.url_file:`), as container and systemd
//! credentials deliver them (`/run/secrets/…`, `$CREDENTIALS_DIRECTORY/…`).
//!
//! The file holds the value alone: trailing line breaks are trimmed (what
//! `echo` and editors add); it must then be non-empty, one line, UTF-8, and
//! at most [`MAX_SECRET_FILE_LEN`] bytes. Errors name the path and never
//! the content.

use std::io::Read;
use std::path::Path;

/// Largest secret file read: secrets are short, and a path mistyped to a
/// device or a log must not be read whole.
pub const MAX_SECRET_FILE_LEN: u64 = 64 * 1024;

/// Why a secret file could not be used. Never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is empty")]
    Empty { path: String },
    #[error("`{path}` is larger than {MAX_SECRET_FILE_LEN} bytes: it must hold the secret alone")]
    TooLarge { path: String },
    #[error("`{path}` holds more than one line: it must hold the secret alone")]
    MultiLine { path: String },
    #[error("`{path}` is not UTF-8 text")]
    NotUtf8 { path: String },
}

/// The secret held by the file at `path`, trailing line breaks trimmed.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let shown = || path.display().to_string();
    let read_err = |source| SecretFileError::Read {
        path: shown(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(SecretFileError::TooLarge { path: shown() });
    }
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotUtf8 { path: shown() })?;
    secret_of(&text).map_err(|e| match e {
        Problem::Empty => SecretFileError::Empty { path: shown() },
        Problem::MultiLine => SecretFileError::MultiLine { path: shown() },
    })
}

/// What can be wrong with a secret file's text.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    Empty,
    MultiLine,
}

/// The secret in a file's text: trailing `\n` / `\r\n` trimmed, then
/// non-blank and on one line.
fn secret_of(text: &str) -> Result<String, Problem> {
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.trim().is_empty() {
        return Err(Problem::Empty);
    }
    if secret.contains(['\n', '\r']) {
        return Err(Problem::MultiLine);
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_line_breaks_are_trimmed_and_nothing_else() {
        assert_eq!(secret_of("s3cret\n").unwrap(), "s3cret");
        assert_eq!(secret_of("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(secret_of("s3cret\n\n").unwrap(), "s3cret");
        assert_eq!(secret_of("s3cret").unwrap(), "s3cret");
        assert_eq!(secret_of(" s3 cret #: ").unwrap(), " s3 cret #: ");
        assert_eq!(secret_of("${NOT_EXPANDED}").unwrap(), "${NOT_EXPANDED}");
    }

    #[test]
    fn blank_and_multi_line_text_is_refused() {
        assert_eq!(secret_of(""), Err(Problem::Empty));
        assert_eq!(secret_of("\n"), Err(Problem::Empty));
        assert_eq!(secret_of("  \n"), Err(Problem::Empty));
        assert_eq!(secret_of("one\ntwo\n"), Err(Problem::MultiLine));
        assert_eq!(secret_of("one\rtwo"), Err(Problem::MultiLine));
    }

    #[test]
    fn errors_name_the_path_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty", b"\n", "is empty"),
            (
                "two",
                b"hunter2\nhunter3\n",
                "holds more than one line: it must hold the secret alone",
            ),
            ("binary", b"hunter2\xff", "is not UTF-8 text"),
        ];
        for (name, content, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let e = read_secret_file(&path).unwrap_err().to_string();
            assert_eq!(e, format!("`{}` {want}", path.display()));
            assert!(!e.contains("hunter"), "{e}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_SECRET_FILE_LEN as usize + 1]).unwrap();
        let e = read_secret_file(&big).unwrap_err().to_string();
        assert!(e.contains("is larger than 65536 bytes"), "{e}");
        let missing = dir.path().join("missing");
        let e = read_secret_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read `{}`: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn a_file_of_max_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut content = vec![b'a'; MAX_SECRET_FILE_LEN as usize - 1];
        content.push(b'\n');
        std::fs::write(&path, &content).unwrap();
        assert_eq!(
            read_secret_file(&path).unwrap().len(),
            MAX_SECRET_FILE_LEN as usize - 1
        );
    }
}
