"""Every stable code: what it means and a reason it comes with (`inspector codes`, README).

The reasons are examples of the words a user sees beside the code; the numbers and field
names in them vary with the input. `tests/core/test_codes.py` keeps this table complete and
the README's copy of it in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspector.errors import Code

README_START = "<!-- codes:start -->"
README_END = "<!-- codes:end -->"


@dataclass(frozen=True, slots=True)
class CodeDoc:
    """What a code means, and an example of the reason that comes with it."""

    meaning: str
    example: str


# What a station's board and the review app say of a rationale that was not produced, by
# its reason; a reason not here is shown as its code.
NOT_PRODUCED_WHY: dict[str, str] = {
    Code.RATIONALE_WORKER_LOST: "the worker stopped before writing it",
    Code.RATIONALE_ENGINE_FAILED: "the model failed while writing it (the verdict stands)",
}

CODES: dict[Code, CodeDoc] = {
    Code.PAYLOAD_TOO_LARGE: CodeDoc(
        "The request message is larger than limits.max_payload_bytes.",
        "payload is 17000000 bytes, above the 16777216-byte limit",
    ),
    Code.PAYLOAD_NOT_JSON: CodeDoc(
        "The request is not UTF-8 JSON.",
        "payload is not JSON: expected value at line 1 column 1",
    ),
    Code.PAYLOAD_TOO_DEEP: CodeDoc(
        "The JSON nests arrays or objects far deeper than any request does.",
        "payload nests arrays or objects too deeply (recursion limit exceeded at line 1 "
        "column 202); a request nests three levels",
    ),
    Code.PAYLOAD_INVALID: CodeDoc(
        "A field is missing, of the wrong type, too long or malformed; each is named.",
        "operator: is longer than 64 characters (65)",
    ),
    Code.PAYLOAD_UNSAFE_TEXT: CodeDoc(
        "A text field holds a control, separator, bidirectional or invisible formatting "
        "character it does not accept (a zero-width joiner or non-joiner is accepted only "
        "between two visible characters, as in emoji sequences and Indic or Persian text).",
        "part_id: contains a bidirectional formatting character (U+202E) at position 3",
    ),
    Code.PAYLOAD_UNSUPPORTED_SCHEMA: CodeDoc(
        "The schema field is missing or names a message version this worker does not speak.",
        "schema: missing; set it to 'inspector.request/v1', the schema this worker speaks",
    ),
    Code.PAYLOAD_BAD_BASE64: CodeDoc(
        "A photo's or voice note's data is not base64.",
        "images[0].data: is not valid base64 (Invalid symbol 42, offset 0.)",
    ),
    Code.PAYLOAD_CHECKSUM_MISMATCH: CodeDoc(
        "The sha256 of a decoded photo or voice note differs from the one declared.",
        "images[0]: sha256 of the data does not match the declared sha256: the payload was "
        "corrupted or built wrongly",
    ),
    Code.PAYLOAD_TOPIC_MISMATCH: CodeDoc(
        "The request names another station than the topic it was published on.",
        "request for osaka/l1/s1 arrived on topic 'inspector/v1/osaka/l1/s2/request'",
    ),
    Code.TOPIC_INVALID: CodeDoc(
        "A topic or a part of it (site, line, station, worker id) is not a valid name; a "
        "long value is quoted as its first 64 characters and its length.",
        "site 'Osaka' must be lowercase letters, digits and '-', 1-64 characters",
    ),
    Code.IMAGE_EMPTY: CodeDoc("A photo has zero bytes.", "images[0]: photo has zero bytes"),
    Code.IMAGE_TOO_LARGE: CodeDoc(
        "An encoded photo is larger than limits.max_image_bytes.",
        "images[1]: photo is 9000000 bytes, above the 8388608-byte limit: resize or re-encode it",
    ),
    Code.IMAGE_UNSUPPORTED_TYPE: CodeDoc(
        "A photo's declared or actual format is not JPEG, PNG, WebP or BMP.",
        "images[0].content_type: 'text/plain' is not a supported type; send one of "
        "'image/jpeg', 'image/png', 'image/webp' or 'image/bmp'",
    ),
    Code.IMAGE_TYPE_MISMATCH: CodeDoc(
        "A photo's bytes are another format than its content_type says.",
        "images[0]: photo declared as image/png but its bytes are image/jpeg",
    ),
    Code.IMAGE_UNDECODABLE: CodeDoc(
        "A photo is truncated or corrupt.",
        "images[2]: photo bytes are not a JPEG, PNG, WebP or BMP image (truncated or corrupt?)",
    ),
    Code.IMAGE_TOO_SMALL: CodeDoc(
        "A photo's side is below limits.min_image_side.",
        "images[0]: photo is 8×8; each side must be at least 16 pixels",
    ),
    Code.IMAGE_TOO_MANY_PIXELS: CodeDoc(
        "A photo (or its header: a decompression bomb) has more than limits.max_pixels.",
        "images[0]: photo header declares an enormous pixel count",
    ),
    Code.AUDIO_EMPTY: CodeDoc(
        "A voice note has no bytes or no samples.", "audio: voice note has zero bytes"
    ),
    Code.AUDIO_TOO_LARGE: CodeDoc(
        "An encoded voice note is larger than limits.max_audio_bytes.",
        "audio: voice note is 9000000 bytes, above the 8388608-byte limit",
    ),
    Code.AUDIO_UNSUPPORTED_TYPE: CodeDoc(
        "A voice note's declared or actual format is not WAV, FLAC or OGG.",
        "audio.content_type: 'audio/mpeg' is not a supported type; send one of 'audio/wav', "
        "'audio/flac' or 'audio/ogg'",
    ),
    Code.AUDIO_TYPE_MISMATCH: CodeDoc(
        "A voice note's bytes are another format than its content_type says.",
        "audio: voice note declared as audio/flac but its bytes are audio/wav",
    ),
    Code.AUDIO_CORRUPT: CodeDoc(
        "A voice note cannot be read or holds invalid samples.",
        "audio: voice note is not a readable WAV, FLAC or OGG file",
    ),
    Code.AUDIO_TOO_LONG: CodeDoc(
        "A voice note lasts longer than limits.max_audio_seconds.",
        "audio: voice note lasts 75.0 s, above the 60 s limit",
    ),
    Code.DUPLICATE_CONFLICT: CodeDoc(
        "A request_id already stored arrived again with different content.",
        "request_id 123e4567-e89b-12d3-a456-426614174000 was already received with different "
        "content; a retry must resend the same capture, a new capture needs a new request_id",
    ),
    Code.ENGINE_FAILED: CodeDoc(
        "The model failed on this request even when run alone.",
        "the model failed on this request (RuntimeError); send it again, and tell the "
        "operators if it keeps failing",
    ),
    Code.COMMIT_FAILED: CodeDoc(
        "The worker could not store the request's verdict after retries.",
        "the worker could not store this request (IntegrityError); send it again, and tell "
        "the operators if it keeps failing",
    ),
    Code.RATIONALE_WORKER_LOST: CodeDoc(
        "A verdict's rationale never arrived: its worker stopped between the verdict and the "
        "rationale. The verdict stands; a live worker marks the rationale not produced after "
        "worker.rationale_timeout_s.",
        "the worker that decided this verdict stopped before writing its rationale",
    ),
    Code.RATIONALE_ENGINE_FAILED: CodeDoc(
        "The model failed while writing the rationale of verdicts already published. The "
        "verdicts stand.",
        "the model failed while writing this rationale (OutOfMemoryError)",
    ),
    Code.INTERNAL_ERROR: CodeDoc(
        "The worker itself failed on a message; the exception type is named, never its text.",
        "the worker failed while validating this request (ZeroDivisionError); the fault is in "
        "the worker, not necessarily in the request: tell the operators",
    ),
    Code.INTERNAL_TIMEOUT: CodeDoc(
        "The worker did not answer within worker.settle_timeout_s; its watchdog rejected it.",
        "the worker did not answer this request within 120 s (its model or media decoding is "
        "stuck); send it again, and tell the operators",
    ),
    Code.CONFIG_INVALID: CodeDoc(
        "A settings file key or INSPECTOR_* variable holds an invalid value.",
        "worker.max_batch (env INSPECTOR_WORKER__MAX_BATCH): Input should be less than or "
        "equal to 1024",
    ),
    Code.STORE_UNAVAILABLE: CodeDoc(
        "The database cannot be reached; retried.",
        "cannot reach the database: connection refused",
    ),
    Code.STORE_FAILED: CodeDoc(
        "The database refused a statement.", "the database refused the statement (DataError)"
    ),
    Code.STORE_CONFLICT: CodeDoc(
        "A write collided with a concurrent one; retrying reconciles it.",
        "a concurrent write stored the same record first",
    ),
    Code.NOT_FOUND: CodeDoc("A looked-up record does not exist.", "no user 'aiko'"),
    Code.REVIEW_INVALID: CodeDoc(
        "A review has no reviewer, an unknown decision or an unknown final verdict.",
        "final verdict must be PASS or FAIL",
    ),
    Code.REVIEW_CONFLICT: CodeDoc(
        "A review_id already stored arrived again with different content.",
        "review 7 was already stored with different content",
    ),
    Code.GOLDEN_NOT_REVIEWED: CodeDoc(
        "Only an inspection with a review that counts can be marked golden: its reviewed "
        "answer is what every worker must give.",
        "inspection 5f0c… has no review that counts; review it first",
    ),
    Code.MODEL_LOAD_FAILED: CodeDoc(
        "A model directory is missing, incomplete or unreadable.",
        "model directory /models/phi4 does not exist; point model.path at a Phi-4-multimodal "
        "directory made by `inspector model import`",
    ),
    Code.MODEL_NEEDS_IMPORT: CodeDoc(
        "model.path holds microsoft/Phi-4-multimodal-instruct as downloaded (the remote-code "
        "layout, model_type phi4mm); it is converted once into a new directory.",
        "/srv/hf/phi4mm is the download's remote-code layout (model_type 'phi4mm'); run "
        "`inspector model import /srv/hf/phi4mm /srv/models/phi4mm-native` and set model.path "
        "to /srv/models/phi4mm-native",
    ),
    Code.MODEL_IMPORT_REFUSED: CodeDoc(
        "`inspector model import` refused its source: a shard missing or cut short, a tensor "
        "of unknown name or unexpected shape, a config it cannot read.",
        "model-00002-of-00003.safetensors is cut short: its header promises 4915916176 bytes "
        "of tensors, the file holds 1048576",
    ),
    Code.MODEL_TARGET_NOT_EMPTY: CodeDoc(
        "A command that writes a model directory was pointed at one that is not empty; it "
        "never writes into an existing model.",
        "/srv/models/phi4mm is not empty; name a new directory",
    ),
    Code.BROKER_PUBLISH_FAILED: CodeDoc(
        "The MQTT client could not queue a publish.", "the MQTT client's queue is full"
    ),
    Code.BROKER_PUBLISH_TIMEOUT: CodeDoc(
        "The broker did not acknowledge a QoS 1 publish in time.",
        "the broker did not acknowledge the publish within 10 s",
    ),
    Code.BROKER_PUBLISH_REFUSED: CodeDoc(
        "The broker acknowledged a publish with a failure reason (e.g. not authorized).",
        "broker refused the publish to inspector/v1/osaka/l1/s1/request: Not authorized",
    ),
    Code.SUBMIT_TIMEOUT: CodeDoc(
        "No verdict or rejection arrived in time for `inspector submit`.",
        "no verdict for 123e4567-e89b-12d3-a456-426614174000 within 60 s; is a worker running?",
    ),
    Code.CAMERA_FAILED: CodeDoc(
        "The camera, stream or video file cannot be opened or read.",
        "camera 0 cannot be opened",
    ),
    Code.MICROPHONE_FAILED: CodeDoc(
        "The microphone cannot be opened, or a voice-note file is unusable.",
        "no input device named 'usb-mic'",
    ),
    Code.SPOOL_FULL: CodeDoc(
        "The station's spool would exceed its disk budget; the capture was not taken.",
        "spool holds 2000 MB, its budget: answer or drop captures first",
    ),
    Code.SPOOL_BUSY: CodeDoc(
        "Another edge agent already owns this spool.", "spool var/spool is used by process 4242"
    ),
    Code.TRIGGER_FAILED: CodeDoc(
        "A capture trigger cannot start or is not configured.", "port 9100 is already in use"
    ),
    Code.DEMO_FAILED: CodeDoc(
        "A step of the demo line did not work.", "the demo worker did not come online in 60 s"
    ),
    Code.BENCH_FAILED: CodeDoc(
        "A benchmark could not run its workload.", "no broker answers on 127.0.0.1:1883"
    ),
    Code.INPUT_INVALID: CodeDoc(
        "A form field, query parameter or CLI argument holds an unacceptable value.",
        "--since must be an ISO 8601 date",
    ),
    Code.ALREADY_EXISTS: CodeDoc(
        "A record with this name already exists.", "user 'aiko' already exists"
    ),
    Code.TRAIN_TOO_FEW_REVIEWS: CodeDoc(
        "Too few reviewed inspections to train or evaluate a site adapter.",
        "site osaka has 12 reviewed inspections; training needs at least 50",
    ),
    Code.TRAIN_CLASS_MISSING: CodeDoc(
        "The training data lacks PASS or FAIL examples, or a holdout.",
        "site osaka has no reviewed FAIL parts",
    ),
    Code.ADAPTER_NOT_FOUND: CodeDoc(
        "No adapter (or dataset snapshot) of that name or id in the registry.",
        "no adapter 'osaka-v9' in the registry",
    ),
    Code.ADAPTER_INVALID_TRANSITION: CodeDoc(
        "An adapter registry change the lifecycle does not allow.",
        "osaka-v2 is already retired",
    ),
    Code.ADAPTER_PROMOTION_REFUSED: CodeDoc(
        "A candidate adapter is worse than the active one (escape rate) and was not forced.",
        "--force needs --reason: say why the rule is overridden",
    ),
    Code.ADAPTER_CHECKSUM_MISMATCH: CodeDoc(
        "An adapter file's sha256 differs from the registry's.",
        "adapter osaka-v2 file has another sha256 than the registry",
    ),
    Code.ADAPTER_LOAD_FAILED: CodeDoc(
        "An announced adapter could not be loaded; the previous one keeps serving.",
        "adapter osaka-v2 could not be loaded (its files are missing)",
    ),
}


def markdown_table() -> str:
    """The table as Markdown, as the README holds it."""
    rows = ["| code | meaning | example reason |", "| --- | --- | --- |"]
    for code, doc in CODES.items():
        example = doc.example.replace("|", "\\|")
        rows.append(f"| `{code.value}` | {doc.meaning} | {example} |")
    return "\n".join(rows)
