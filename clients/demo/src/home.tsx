// The home screen: the user's workspaces, their projects, each project's
// documents; create projects and documents; open a document shared by link.
// Projects and documents are live lists (@tandem/react's useProjects and
// useDocuments over the workspace event stream): what others create, rename
// or delete shows up without a reload.

import type { JSX } from 'react'
import { useEffect, useState, type FormEvent } from 'react'
import { useDocuments, useProjects } from '@tandem/react'
import { call, listAll, type DocumentInfo, type Project, type Workspace } from './api'

function CreateForm ({ placeholder, onCreate, testId }: {
  placeholder: string
  onCreate: (name: string) => Promise<void>
  testId: string
}): JSX.Element {
  const [name, setName] = useState('')
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault()
    if (name.trim() === '') return
    await onCreate(name.trim())
    setName('')
  }
  return (
    <form className='inline' onSubmit={(e) => { void submit(e) }}>
      <input placeholder={placeholder} value={name} data-testid={`${testId}-name`}
        onChange={(e) => setName(e.target.value)} />
      <button type='submit' data-testid={`${testId}-create`}>Create</button>
    </form>
  )
}

function ProjectCard ({ project, workspaceId }: { project: Project, workspaceId: string }): JSX.Element {
  const docs = useDocuments(workspaceId, project.id).items
  const create = async (title: string): Promise<void> => {
    const d = await call<DocumentInfo>('POST', `/projects/${project.id}/documents`, { title })
    location.hash = `#/doc/${d.id}`
  }
  return (
    <section className='card project' data-testid='project'>
      <h3>{project.name}</h3>
      <ul className='docs'>
        {docs.map((d) => <li key={d.id}><a href={`#/doc/${d.id}`}>{d.title}</a> <span className='role'>{d.role}</span></li>)}
        {docs.length === 0 && <li className='muted'>No documents yet</li>}
      </ul>
      {project.role !== 'viewer' && <CreateForm placeholder='New document title' onCreate={create} testId='doc' />}
    </section>
  )
}

function WorkspaceView ({ workspace }: { workspace: Workspace }): JSX.Element {
  const projects = useProjects(workspace.id).items
  const create = async (name: string): Promise<void> => {
    await call('POST', `/workspaces/${workspace.id}/projects`, { name })
  }
  return (
    <div className='workspace' data-testid='workspace'>
      <h2>{workspace.name} <span className='role'>{workspace.type} · {workspace.role}</span></h2>
      <div className='projects'>{projects.map((p) => <ProjectCard key={p.id} project={p} workspaceId={workspace.id} />)}</div>
      {workspace.role !== 'viewer' && <CreateForm placeholder='New project name' onCreate={create} testId='project' />}
    </div>
  )
}

export function Home (): JSX.Element {
  const [workspaces, setWorkspaces] = useState<Workspace[] | null>(null)
  const [loadError, setLoadError] = useState<string | null>(null)
  const [link, setLink] = useState('')
  useEffect(() => {
    // A failed load is tried again (backing off to 10 s) instead of leaving an empty home screen.
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const load = (attempt: number): void => {
      listAll<Workspace>('/workspaces').then((w) => {
        if (stopped) return
        setWorkspaces(w)
        setLoadError(null)
      }).catch((err: unknown) => {
        if (stopped) return
        setLoadError(err instanceof Error ? err.message : String(err))
        timer = setTimeout(() => load(attempt + 1), Math.min(500 * 2 ** attempt, 10000))
      })
    }
    load(0)
    return () => { stopped = true; clearTimeout(timer) }
  }, [])
  const open = (e: FormEvent): void => {
    e.preventDefault()
    const id = /([\w-]+)\s*$/.exec(link)?.[1]
    if (id !== undefined) location.hash = `#/doc/${id}`
  }
  return (
    <>
      {loadError !== null && <p className='muted' data-testid='workspaces-error'>Could not load your workspaces ({loadError}); trying again…</p>}
      {workspaces === null && loadError === null && <p className='muted'>Loading…</p>}
      {workspaces?.map((w) => <WorkspaceView key={w.id} workspace={w} />)}
      <form className='inline card' onSubmit={open}>
        <span>Shared with you? Paste the document's link:</span>
        <input placeholder='…#/doc/ID' value={link} onChange={(e) => setLink(e.target.value)} />
        <button type='submit'>Open</button>
      </form>
    </>
  )
}
