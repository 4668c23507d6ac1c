//! Files (`http::file_routes`), one entry per route and method.

use tandem_protocol::files::*;
use utoipa::openapi::schema::Type;

use super::*;

pub fn operations() -> Vec<Op> {
    vec![
        post(
            "/workspaces/{id}/files/uploads",
            "createUpload",
            "Announce an upload: dedupe hit (200 exists) or part URLs (201 pending)",
        )
        .describe(
            "Editors of the workspace. 200 `{status:\"exists\", file}` when a ready file of this \
             workspace has the same sha256 (send nothing); otherwise 201 `{status:\"pending\", \
             uploadId, parts, expiresAt, partSize}`: send each part's bytes to its URL, then \
             complete. 413 `file_too_large` above TANDEM_FILES_MAX_BYTES; 507 `quota_exceeded` \
             when the workspace's quota would be exceeded.",
        )
        .body::<CreateUpload>()
        .errors(&[403, 404, 507])
        .ok::<UploadAnswer>(200)
        .ok::<UploadAnswer>(201),
        get(
            "/files/uploads/{uploadId}",
            "getUpload",
            "Resume an upload: fresh part URLs and the parts received",
        )
        .describe("Only the uploader; anyone else (and an expired upload) gets 404.")
        .errors(&[404])
        .ok::<UploadAnswer>(200),
        post(
            "/files/uploads/{uploadId}/complete",
            "completeUpload",
            "Check size and sha256 and make the file",
        )
        .describe(
            "201 `{file}`. 422 `hash_mismatch` or `size_mismatch`: the bytes are not the \
             declared ones; nothing was kept (start again). 409: parts are missing (the \
             message lists them; send them and complete again), another completion runs, or \
             a part is still being sent through control (complete once it has ended). \
             410: the upload expired. 503: the object store cannot be reached. The body is \
             optional.",
        )
        .optional_body::<CompleteUpload>()
        .errors(&[403, 404, 409, 410, 503])
        .ok::<FileAnswer>(201),
        get("/files/{id}", "getFile", "A file's metadata")
            .describe(
                "Readers of its workspace, and readers of a conversation of that workspace \
                 where a message attaches it; anyone else gets 404.",
            )
            .errors(&[404])
            .ok::<FileMeta>(200),
        delete("/files/{id}", "deleteFile", "Delete a file")
            .describe(
                "Its uploader (while an editor) or a workspace owner. It disappears at once \
                 (metadata and downloads answer 404); its bytes are collected after the grace \
                 period.",
            )
            .errors(&[403, 404])
            .no_content(),
        get(
            "/files/{id}/content",
            "downloadFile",
            "302 to a short-lived signed download URL",
        )
        .describe(
            "Readers of its workspace, and readers of a conversation where a message attaches \
             it. The URL expires after TANDEM_FILES_URL_TTL_SECS, so \
             losing access ends downloading within that time. Check the sha256 of what you \
             download against the file's.",
        )
        .errors(&[404])
        .answer(302, "Redirect to the signed URL (`Location`)", None),
        get(
            "/files/{id}/url",
            "fileUrl",
            "The signed download URL as JSON {url, expiresAt}",
        )
        .errors(&[404])
        .ok_object(
            200,
            ObjectBuilder::new()
                .property("url", typed(Type::String))
                .required("url")
                .property(
                    "expiresAt",
                    typed(Type::Integer).description(Some("Unix ms")),
                )
                .required("expiresAt"),
        ),
        get(
            "/blobs/{fileId}",
            "getBlob",
            "Signed download (directory backend): the bytes, with Range support",
        )
        .public()
        .describe(
            "Only through a URL from `/files/{id}/content`: `?expires&signature` are required; \
             403 `invalid_signature` when altered or expired. `Range: bytes=a-b` answers 206; \
             416 outside the file. `Content-Disposition: attachment`.",
        )
        .query("expires", Type::Integer, "Unix seconds (signed)")
        .query(
            "signature",
            Type::String,
            "HMAC of the method, path and expiry",
        )
        .errors(&[403, 404, 416])
        .answer(
            200,
            "The bytes",
            Some(("application/octet-stream", bytes())),
        )
        .answer(
            206,
            "The requested range",
            Some(("application/octet-stream", bytes())),
        ),
        put(
            "/blobs/{fileId}/parts/{n}",
            "putBlobPart",
            "Signed upload of one part (directory backend; small files and multipart parts on S3)",
        )
        .public()
        .describe(
            "Only through a URL from an upload intent. The body is exactly the part's bytes \
             (422 `size_mismatch` otherwise). A one-part upload whose bytes do not match the \
             declared sha256 is refused at once with 422 `hash_mismatch`, and nothing is kept. \
             Answers an `ETag` to pass back on completion. On S3, a one-part upload of at most \
             `TANDEM_S3_THROUGH_CONTROL_BYTES` is sent here too (control passes the bytes on to \
             the store) and this request completes it: the answer is `{file}` and no completion \
             call is needed (one still answers the same file). The parts of a multipart S3 \
             upload come here too (`TANDEM_S3_PARTS_THROUGH_CONTROL`). On either backend, a \
             multipart part whose intent says \
             `sha256State` carries the `tandem-sha256-state` header (the SHA-256 state of the \
             file's bytes before the part; 422 `validation_failed` when it is not 64 hex \
             digits), control hashes the part from it on the way, and a last part that does not \
             end in the declared sha256 is refused with 422 `hash_mismatch` (the upload gone). \
             Otherwise the body is empty.",
        )
        .query("expires", Type::Integer, "Unix seconds (signed)")
        .query(
            "signature",
            Type::String,
            "HMAC of the method, path and expiry",
        )
        .body_with("application/octet-stream", bytes())
        .errors(&[403, 404, 422])
        .ok::<FileAnswer>(200),
    ]
}
