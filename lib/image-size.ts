// How big is an image in the registry? The sum of its compressed layers, read from its manifest; an index
// resolves to the requested platform (default linux/amd64) the way registry assembly does. No layer is downloaded.
import { type RegistryClient, parseImageRef } from './registry.ts'
import { parsePlatform, resolveImage } from './assemble-registry.ts'

export async function compressedImageBytes(client: RegistryClient, ref: string, platform = 'linux/amd64'): Promise<number> {
  return (await imageLayers(client, ref, platform)).reduce((sum, l) => sum + l.size, 0)
}

/** The image's layers (digest and compressed size), from its manifest (an index resolves to `platform`). */
export async function imageLayers(client: RegistryClient, ref: string, platform = 'linux/amd64'): Promise<Array<{ digest: string; size: number }>> {
  const image = await resolveImage(client, parseImageRef(ref), parsePlatform(platform))
  return image.manifest.layers.map((l) => ({ digest: l.digest, size: l.size }))
}
