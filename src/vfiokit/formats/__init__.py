"""Pure parsers and serializers of the files and lines vfiokit reads and writes: text in, values
out, and back. No I/O and no policy: a source reads the bytes, an edit writes through the writer,
both use the same format module. Imports nothing of vfiokit's but `model` and `errors`."""
