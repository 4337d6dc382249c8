//! What a file's name says in HTTP: its `Content-Type`, guessed from the
//! extension, and a `Content-Disposition` carrying the name. The name comes
//! from a manifest, that is from the network: it is reduced to its last path
//! component and to characters that are safe in a header. Pure.

/// The type served when the name says nothing we know.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The `Content-Type` for a file called `name`.
pub fn content_type(name: Option<&str>) -> &'static str {
    let Some(ext) = name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e) else {
        return OCTET_STREAM;
    };
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => OCTET_STREAM,
    }
}

/// The name as it may appear in a header: its last path component, without
/// control characters; None when nothing is left.
pub fn safe_name(name: Option<&str>) -> Option<String> {
    let last = name?.rsplit(['/', '\\']).next()?;
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    (!clean.is_empty() && clean != "." && clean != "..").then(|| clean.to_string())
}

/// `inline` (a browser shows what it can, and saves the rest under the
/// name), with the name in both the plain and the UTF-8 (RFC 6266) forms.
pub fn content_disposition(name: Option<&str>) -> String {
    let Some(name) = safe_name(name) else {
        return "inline".into();
    };
    let plain: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_ascii() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("inline; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_extension() {
        assert_eq!(content_type(Some("a.PNG")), "image/png");
        assert_eq!(content_type(Some("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Some("movie.tar.gz")), "application/gzip");
        assert_eq!(content_type(Some("README")), OCTET_STREAM);
        assert_eq!(content_type(Some("x.unknown")), OCTET_STREAM);
        assert_eq!(content_type(None), OCTET_STREAM);
    }

    #[test]
    fn names_from_the_network_are_made_safe() {
        assert_eq!(
            safe_name(Some("../../etc/passwd")).as_deref(),
            Some("passwd")
        );
        assert_eq!(safe_name(Some("a\r\nb.txt")).as_deref(), Some("ab.txt"));
        assert_eq!(safe_name(Some("dir/")), None);
        assert_eq!(safe_name(Some("..")), None);
        assert_eq!(safe_name(None), None);
    }

    #[test]
    fn dispositions_are_valid_header_values() {
        assert_eq!(content_disposition(None), "inline");
        assert_eq!(
            content_disposition(Some("photo 1.png")),
            "inline; filename=\"photo 1.png\"; filename*=UTF-8''photo%201.png"
        );
        let d = content_disposition(Some("na\"ïve.txt"));
        assert_eq!(
            d,
            "inline; filename=\"na__ve.txt\"; filename*=UTF-8''na%22%C3%AFve.txt"
        );
        for name in ["a\u{7f}b", "x\ty", "日本.txt", "q\"uote"] {
            let v = content_disposition(Some(name));
            assert!(axum::http::HeaderValue::from_str(&v).is_ok(), "{v:?}");
        }
    }
}
