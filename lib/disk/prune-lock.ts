// A one-at-a-time lock: two prunes at once race for the daemon's prune lock and one fails with rc=1,
// so every prune in a run goes through one Mutex.
export class Mutex {
  private tail: Promise<void> = Promise.resolve()
  private held = false
  get busy(): boolean {
    return this.held
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.tail
    let release!: () => void
    this.tail = new Promise((r) => (release = r))
    await previous
    this.held = true
    try {
      return await fn()
    } finally {
      this.held = false
      release()
    }
  }
}
