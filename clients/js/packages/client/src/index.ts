// @tandem/client: typed REST calls to Tandem's control service, live Yjs
// documents through its relay, and live conversations over server-sent events.
export { createTandem, type Tandem, type TandemOptions } from './tandem.js'
export { TandemError } from './errors.js'
export {
  createHttpClient, fillPath,
  type HttpClient, type HttpClientOptions, type HttpMethod, type PathsWith, type Operation,
  type RequestOptions, type ResponseOf, type BodyOf, type SuccessBody, type PagedPaths, type ItemOf,
  type paths, type components
} from './http.js'
export {
  DocumentConnection,
  type ConnectDocumentOptions, type ConnectionStatus, type DocumentEvents, type DocumentState,
  type DocumentTransport, type ResourceType, type Revocation
} from './document.js'
export {
  LiveConversation,
  type Conversation, type ConversationEvent, type ConversationState, type LiveConversationEvents,
  type Message, type SendMessageBody, type ChunkData, type MessageFinishedData
} from './conversation.js'
export { EventStream, SseParser, type EventStreamEvents, type EventStreamOptions, type ServerSentEvent, type StreamStatus } from './sse.js'
export { Backoff, type BackoffOptions } from './backoff.js'
export { Emitter, type Listener } from './emitter.js'
export {
  WorkspaceFeed, LiveList, workspaceFeed, watchProjects, watchDocuments, watchConversations,
  type WorkspaceEvent, type WorkspaceFeedEvents, type LiveListState, type LiveListEvents, type LiveSource,
  type Project, type Resource, type ConversationItem, type ResourceKind
} from './live.js'
export {
  FilesClient, Transfer, UploadTransfer, DownloadTransfer, TransferQueue,
  type FileInfo, type UploadIntent, type UploadIntentBody, type UploadPart, type UploadCheckpoint,
  type FilesOptions, type UploadOptions, type DownloadOptions, type DownloadResult,
  type TransferKind, type TransferState, type TransferProgress, type TransferEvents
} from './files.js'
export { Sha256, sha256Blob, sha256Bytes, type HashOptions } from './sha256.js'
