// A tiny typed event emitter (no dependency), used by connections and streams.

export type Listener<A extends unknown[]> = (...args: A) => void

export class Emitter<Events extends { [K in keyof Events]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Set<(...args: never[]) => void>>()

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events> (event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) { set = new Set(); this.listeners.set(event, set) }
    set.add(listener as unknown as (...args: never[]) => void)
    return () => this.off(event, listener)
  }

  off<K extends keyof Events> (event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as unknown as (...args: never[]) => void)
  }

  protected emit<K extends keyof Events> (event: K, ...args: Events[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as unknown as Listener<Events[K]>)(...args)
      } catch (err) {
        // A listener's bug must not break the connection that emits.
        setTimeout(() => { throw err }, 0)
      }
    }
  }

  protected removeAllListeners (): void {
    this.listeners.clear()
  }
}
