//! `POST /uploads`: a crowd send's audience file, as multipart form data (`file` field). The file
//! is stored in chunks as it arrives, never held whole, up to `api.max_upload_bytes`; the answer
//! is the upload's id for `crowdSend(input: {uploadId})`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::keys::Scope;

use crate::graphql::{authenticate, error};
use crate::server::AppState;

/// Bytes per stored chunk.
const CHUNK: usize = 1024 * 1024;

pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if !caller.allows(Scope::Send) {
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "MISSING_SCOPE",
            "this key lacks the send scope",
        );
    }
    if !state.rate.allow(&caller.key_id, Instant::now()) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "KEY_RATE",
            "too many requests for this API key; slow down",
        );
    }
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "NOT_MULTIPART",
                &format!("send the file as multipart/form-data in a field named file: {rejection}"),
            );
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    match store_file(&state, &mut multipart, &id, caller.tenant.as_str()).await {
        Ok(upload) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({
                "id": upload.id,
                "filename": upload.filename,
                "bytes": upload.bytes,
                "lines": upload.lines,
            })),
        )
            .into_response(),
        Err(refusal) => {
            if let Err(e) = store::crowd::discard_upload(&state.store, &id).await {
                tracing::warn!(error = %e, upload = %id, "dropping an unfinished upload failed");
            }
            refusal
        }
    }
}

async fn store_file(
    state: &AppState,
    multipart: &mut Multipart,
    id: &str,
    tenant: &str,
) -> Result<store::crowd::Upload, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "VALIDATION",
            "UPLOAD_TOO_LARGE",
            &format!("an upload may be at most {} bytes", state.max_upload_bytes),
        )
    };
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            error(e.status(), "VALIDATION", "BAD_MULTIPART", &e.body_text())
        }
    };
    let internal = |e: store::StoreError| {
        tracing::error!(error = %e, "storing an upload failed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "INTERNAL",
            "something went wrong",
        )
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().unwrap_or("upload.csv").to_owned();
        let (mut bytes, mut lines, mut seq) = (0u64, 0u64, 0u32);
        let mut last = b'\n';
        let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK);
        while let Some(piece) = field.chunk().await.map_err(bad)? {
            bytes += piece.len() as u64;
            if bytes > state.max_upload_bytes as u64 {
                return Err(too_large());
            }
            lines += piece.iter().filter(|b| **b == b'\n').count() as u64;
            if let Some(b) = piece.last() {
                last = *b;
            }
            buffer.extend_from_slice(&piece);
            if buffer.len() >= CHUNK {
                let start = bytes - buffer.len() as u64;
                store::crowd::put_chunk(&state.store, id, seq, start, &buffer)
                    .await
                    .map_err(internal)?;
                seq += 1;
                buffer.clear();
            }
        }
        if !buffer.is_empty() {
            let start = bytes - buffer.len() as u64;
            store::crowd::put_chunk(&state.store, id, seq, start, &buffer)
                .await
                .map_err(internal)?;
        }
        if bytes == 0 {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "EMPTY_FILE",
                "the file is empty",
            ));
        }
        if last != b'\n' {
            lines += 1;
        }
        let upload = store::crowd::Upload {
            id: id.to_owned(),
            tenant_id: tenant.to_owned(),
            filename,
            bytes,
            lines,
        };
        store::crowd::finish_upload(&state.store, &upload)
            .await
            .map_err(internal)?;
        return Ok(upload);
    }
    Err(error(
        StatusCode::BAD_REQUEST,
        "VALIDATION",
        "NO_FILE",
        "the form has no field named file",
    ))
}
