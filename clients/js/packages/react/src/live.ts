// Live lists as hooks: the projects, documents and conversations of a
// workspace, kept current by @tandem/client's workspace event stream (one
// stream per workspace, shared by every list using it). Each hook makes its
// list for the component's lifetime and subscribes with useSyncExternalStore.
import { useEffect, useState, useSyncExternalStore } from 'react'
import {
  watchConversations, watchDocuments, watchProjects,
  type ConversationItem, type LiveList, type LiveListState, type Project, type Resource, type ResourceKind, type Tandem
} from '@tandem/client'
import { useClient } from './index.js'

export interface UseLiveListOptions {
  /** The client (default: the TandemProvider's). */
  client?: Tandem
}

const noop = (): (() => void) => () => {}
const idle: LiveListState<never> = { items: [], loaded: false, status: 'connecting', revoked: null, error: null }

function useLiveList<T extends { id: string }> (make: ((client: Tandem) => LiveList<T>) | null, deps: readonly unknown[], options: UseLiveListOptions): LiveListState<T> {
  const client = useClient(options.client)
  const [list, setList] = useState<LiveList<T> | null>(null)
  useEffect(() => {
    if (make === null) return
    const live = make(client)
    setList(live)
    return () => {
      live.close()
      setList((l) => (l === live ? null : l))
    }
  // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, ...deps])
  const getIdle = (): LiveListState<T> => idle
  return useSyncExternalStore(list?.subscribe ?? noop, list?.getSnapshot ?? getIdle, list?.getSnapshot ?? getIdle)
}

/** The projects of a workspace the user can read, live (oldest first). */
export function useProjects (workspaceId: string | null | undefined, options: UseLiveListOptions = {}): LiveListState<Project> {
  return useLiveList(workspaceId ? (c) => watchProjects(c, workspaceId) : null, [workspaceId], options)
}

/** The documents (or diagrams, tasks) of a project, live (oldest first). */
export function useDocuments (workspaceId: string | null | undefined, projectId: string | null | undefined, kind: ResourceKind = 'documents', options: UseLiveListOptions = {}): LiveListState<Resource> {
  return useLiveList(workspaceId && projectId ? (c) => watchDocuments(c, workspaceId, projectId, kind) : null, [workspaceId, projectId, kind], options)
}

/** The user's conversations in a workspace (of one project, if given), live, newest activity first. */
export function useConversations (workspaceId: string | null | undefined, projectId?: string | null, options: UseLiveListOptions = {}): LiveListState<ConversationItem> {
  return useLiveList(workspaceId ? (c) => watchConversations(c, workspaceId, projectId ? { projectId } : {}) : null, [workspaceId, projectId], options)
}
