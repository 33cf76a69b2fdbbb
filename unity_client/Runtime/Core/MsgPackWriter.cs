// A small msgpack encoder: just the types the neurender wire format uses (nil, bool, integers,
// float32/64, str, bin, array, map, ext). Written here instead of pulling a NuGet package so the
// core builds with nothing but mcs and Unity needs no extra DLLs.
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Neurender.Core
{
    /// <summary>A msgpack ext value: a type code and its raw payload.</summary>
    public sealed class MsgPackExt
    {
        public readonly sbyte Type;
        public readonly byte[] Data;
        public MsgPackExt(sbyte type, byte[] data) { Type = type; Data = data ?? throw new ArgumentNullException(nameof(data)); }
    }

    /// <summary>A map whose keys are written in insertion order (a header reads the same in a
    /// packet capture as in docs/protocol.md).</summary>
    public sealed class OrderedMap : List<KeyValuePair<string, object>>
    {
        public void Add(string key, object value) => Add(new KeyValuePair<string, object>(key, value));
    }

    public sealed class MsgPackWriter
    {
        readonly MemoryStream _out;

        public MsgPackWriter(int capacity = 256) { _out = new MemoryStream(capacity); }

        public byte[] ToArray() => _out.ToArray();

        /// <summary>Encodes one value (null, bool, any integer, float, double, string, byte[],
        /// IDictionary with string keys, IList / arrays, MsgPackExt) into a new byte array.</summary>
        public static byte[] Pack(object value)
        {
            var w = new MsgPackWriter();
            w.Write(value);
            return w.ToArray();
        }

        public void WriteNil() => _out.WriteByte(0xc0);
        public void Write(bool v) => _out.WriteByte(v ? (byte)0xc3 : (byte)0xc2);

        public void Write(long v)
        {
            if (v >= 0) { Write((ulong)v); return; }
            if (v >= -32) _out.WriteByte(unchecked((byte)(sbyte)v));
            else if (v >= sbyte.MinValue) { _out.WriteByte(0xd0); _out.WriteByte(unchecked((byte)(sbyte)v)); }
            else if (v >= short.MinValue) { _out.WriteByte(0xd1); BE((ulong)(ushort)(short)v, 2); }
            else if (v >= int.MinValue) { _out.WriteByte(0xd2); BE((ulong)(uint)(int)v, 4); }
            else { _out.WriteByte(0xd3); BE(unchecked((ulong)v), 8); }
        }

        public void Write(ulong v)
        {
            if (v <= 0x7f) _out.WriteByte((byte)v);
            else if (v <= byte.MaxValue) { _out.WriteByte(0xcc); _out.WriteByte((byte)v); }
            else if (v <= ushort.MaxValue) { _out.WriteByte(0xcd); BE(v, 2); }
            else if (v <= uint.MaxValue) { _out.WriteByte(0xce); BE(v, 4); }
            else { _out.WriteByte(0xcf); BE(v, 8); }
        }

        public void Write(float v)
        {
            _out.WriteByte(0xca);
            BE((ulong)(uint)BitConverter.ToInt32(BitConverter.GetBytes(v), 0), 4);
        }

        public void Write(double v)
        {
            _out.WriteByte(0xcb);
            BE(unchecked((ulong)BitConverter.DoubleToInt64Bits(v)), 8);
        }

        public void Write(string s)
        {
            if (s == null) { WriteNil(); return; }
            byte[] b = Encoding.UTF8.GetBytes(s);
            int n = b.Length;
            if (n <= 31) _out.WriteByte((byte)(0xa0 | n));
            else if (n <= byte.MaxValue) { _out.WriteByte(0xd9); _out.WriteByte((byte)n); }
            else if (n <= ushort.MaxValue) { _out.WriteByte(0xda); BE((ulong)n, 2); }
            else { _out.WriteByte(0xdb); BE((ulong)n, 4); }
            _out.Write(b, 0, n);
        }

        public void Write(byte[] b)
        {
            if (b == null) { WriteNil(); return; }
            int n = b.Length;
            if (n <= byte.MaxValue) { _out.WriteByte(0xc4); _out.WriteByte((byte)n); }
            else if (n <= ushort.MaxValue) { _out.WriteByte(0xc5); BE((ulong)n, 2); }
            else { _out.WriteByte(0xc6); BE((ulong)n, 4); }
            _out.Write(b, 0, n);
        }

        public void WriteArrayHeader(int n)
        {
            if (n < 0) throw new ArgumentOutOfRangeException(nameof(n));
            if (n <= 15) _out.WriteByte((byte)(0x90 | n));
            else if (n <= ushort.MaxValue) { _out.WriteByte(0xdc); BE((ulong)n, 2); }
            else { _out.WriteByte(0xdd); BE((ulong)n, 4); }
        }

        public void WriteMapHeader(int n)
        {
            if (n < 0) throw new ArgumentOutOfRangeException(nameof(n));
            if (n <= 15) _out.WriteByte((byte)(0x80 | n));
            else if (n <= ushort.MaxValue) { _out.WriteByte(0xde); BE((ulong)n, 2); }
            else { _out.WriteByte(0xdf); BE((ulong)n, 4); }
        }

        public void Write(MsgPackExt e)
        {
            int n = e.Data.Length;
            switch (n)
            {
                case 1: _out.WriteByte(0xd4); break;
                case 2: _out.WriteByte(0xd5); break;
                case 4: _out.WriteByte(0xd6); break;
                case 8: _out.WriteByte(0xd7); break;
                case 16: _out.WriteByte(0xd8); break;
                default:
                    if (n <= byte.MaxValue) { _out.WriteByte(0xc7); _out.WriteByte((byte)n); }
                    else if (n <= ushort.MaxValue) { _out.WriteByte(0xc8); BE((ulong)n, 2); }
                    else { _out.WriteByte(0xc9); BE((ulong)n, 4); }
                    break;
            }
            _out.WriteByte(unchecked((byte)e.Type));
            _out.Write(e.Data, 0, n);
        }

        public void Write(object v)
        {
            if (v == null) WriteNil();
            else if (v is bool) Write((bool)v);
            else if (v is string) Write((string)v);
            else if (v is byte[]) Write((byte[])v);
            else if (v is float) Write((float)v);
            else if (v is double) Write((double)v);
            else if (v is sbyte || v is short || v is int || v is long) Write(Convert.ToInt64(v));
            else if (v is byte || v is ushort || v is uint || v is ulong) Write(Convert.ToUInt64(v));
            else if (v is MsgPackExt) Write((MsgPackExt)v);
            else if (v is OrderedMap)
            {
                var map = (OrderedMap)v;
                WriteMapHeader(map.Count);
                foreach (var kv in map) { Write(kv.Key); Write(kv.Value); }
            }
            else if (v is IDictionary)
            {
                var map = (IDictionary)v;
                WriteMapHeader(map.Count);
                foreach (DictionaryEntry kv in map) { Write(kv.Key); Write(kv.Value); }
            }
            else if (v is IList)
            {
                var list = (IList)v;
                WriteArrayHeader(list.Count);
                foreach (object item in list) Write(item);
            }
            else throw new ArgumentException("msgpack: cannot encode a " + v.GetType().FullName);
        }

        void BE(ulong v, int bytes)
        {
            for (int i = bytes - 1; i >= 0; i--) _out.WriteByte((byte)(v >> (8 * i)));
        }
    }
}
