// The matching msgpack decoder. Bytes from the daemon are treated as untrusted: every length is
// checked against what is left in the buffer and against explicit limits before anything is
// allocated, nesting depth is bounded, and trailing bytes are an error.
using System;
using System.Collections.Generic;
using System.Text;

namespace Neurender.Core
{
    /// <summary>The bytes were not one well-formed msgpack value within the reader's limits.</summary>
    public sealed class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    /// <summary>Decodes msgpack into plain objects: null, bool, long (ulong above long.MaxValue),
    /// double (float32 widened), string, byte[], List&lt;object&gt;, Dictionary&lt;string, object&gt;
    /// (string keys only: the wire format has no others), MsgPackExt.</summary>
    public sealed class MsgPackReader
    {
        public int MaxDepth = 32;
        public int MaxContainerLength = 1 << 16;
        public int MaxBytesLength = 64 << 20;

        byte[] _b;
        int _p, _end;

        public static object Unpack(byte[] data) => new MsgPackReader().Read(data, 0, data.Length);

        public object Read(byte[] data, int offset, int count)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            if (offset < 0 || count < 0 || offset + count > data.Length) throw new ArgumentOutOfRangeException(nameof(count));
            _b = data; _p = offset; _end = offset + count;
            object v = Value(0);
            if (_p != _end) throw new MsgPackException($"msgpack: {_end - _p} trailing bytes after the value");
            return v;
        }

        object Value(int depth)
        {
            if (depth > MaxDepth) throw new MsgPackException("msgpack: nesting deeper than " + MaxDepth);
            byte t = U8();
            if (t <= 0x7f) return (long)t;
            if (t >= 0xe0) return (long)(sbyte)t;
            if ((t & 0xf0) == 0x80) return Map(t & 0x0f, depth);
            if ((t & 0xf0) == 0x90) return Array(t & 0x0f, depth);
            if ((t & 0xe0) == 0xa0) return Str(t & 0x1f);
            switch (t)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return Bin((int)BE(1));
                case 0xc5: return Bin((int)BE(2));
                case 0xc6: return Bin(Len32());
                case 0xc7: return Ext((int)BE(1));
                case 0xc8: return Ext((int)BE(2));
                case 0xc9: return Ext(Len32());
                case 0xca: return (double)BitConverter.ToSingle(BitConverter.GetBytes((uint)BE(4)), 0);
                case 0xcb: return BitConverter.Int64BitsToDouble(unchecked((long)BE(8)));
                case 0xcc: return (long)BE(1);
                case 0xcd: return (long)BE(2);
                case 0xce: return (long)BE(4);
                case 0xcf: { ulong u = BE(8); return u <= long.MaxValue ? (object)(long)u : u; }
                case 0xd0: return (long)unchecked((sbyte)BE(1));
                case 0xd1: return (long)unchecked((short)BE(2));
                case 0xd2: return (long)unchecked((int)BE(4));
                case 0xd3: return unchecked((long)BE(8));
                case 0xd4: return Ext(1);
                case 0xd5: return Ext(2);
                case 0xd6: return Ext(4);
                case 0xd7: return Ext(8);
                case 0xd8: return Ext(16);
                case 0xd9: return Str((int)BE(1));
                case 0xda: return Str((int)BE(2));
                case 0xdb: return Str(Len32());
                case 0xdc: return Array((int)BE(2), depth);
                case 0xdd: return Array(Len32(), depth);
                case 0xde: return Map((int)BE(2), depth);
                case 0xdf: return Map(Len32(), depth);
                default: throw new MsgPackException($"msgpack: unknown type byte 0x{t:x2}");
            }
        }

        List<object> Array(int n, int depth)
        {
            CheckContainer(n);
            var list = new List<object>(Math.Min(n, _end - _p));
            for (int i = 0; i < n; i++) list.Add(Value(depth + 1));
            return list;
        }

        Dictionary<string, object> Map(int n, int depth)
        {
            CheckContainer(n);
            var map = new Dictionary<string, object>(Math.Min(n, (_end - _p) / 2));
            for (int i = 0; i < n; i++)
            {
                if (!(Value(depth + 1) is string key)) throw new MsgPackException("msgpack: map key is not a string");
                if (map.ContainsKey(key)) throw new MsgPackException($"msgpack: duplicate map key '{key}'");
                map[key] = Value(depth + 1);
            }
            return map;
        }

        string Str(int n)
        {
            Need(n);
            try
            {
                string s = new UTF8Encoding(false, true).GetString(_b, _p, n);
                _p += n;
                return s;
            }
            catch (DecoderFallbackException) { throw new MsgPackException("msgpack: string is not valid UTF-8"); }
        }

        byte[] Bin(int n)
        {
            if (n > MaxBytesLength) throw new MsgPackException($"msgpack: {n} bytes of bin exceed the limit {MaxBytesLength}");
            Need(n);
            var r = new byte[n];
            Buffer.BlockCopy(_b, _p, r, 0, n);
            _p += n;
            return r;
        }

        MsgPackExt Ext(int n)
        {
            sbyte type = unchecked((sbyte)U8());
            return new MsgPackExt(type, Bin(n));
        }

        void CheckContainer(int n)
        {
            if (n > MaxContainerLength) throw new MsgPackException($"msgpack: container of {n} items exceeds the limit {MaxContainerLength}");
            if (n > _end - _p) throw new MsgPackException("msgpack: container longer than the message"); // each item needs >= 1 byte
        }

        int Len32()
        {
            ulong n = BE(4);
            if (n > int.MaxValue) throw new MsgPackException("msgpack: length over 2 GiB");
            return (int)n;
        }

        void Need(int n)
        {
            if (n < 0 || n > _end - _p) throw new MsgPackException("msgpack: truncated message");
        }

        byte U8() { Need(1); return _b[_p++]; }

        ulong BE(int bytes)
        {
            Need(bytes);
            ulong v = 0;
            for (int i = 0; i < bytes; i++) v = (v << 8) | _b[_p++];
            return v;
        }
    }
}
