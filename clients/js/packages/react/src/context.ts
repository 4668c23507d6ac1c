// The context TandemProvider fills, shared by the hooks of both entry points.
import { createContext } from 'react'
import type { Tandem } from '@tandem/client'

export const TandemContext = createContext<Tandem | null>(null)
