"""An MCP client built on the official Python SDK (`mcp`, pinned by .ci/install-python-mcp.sh),
driven by tests/e2e/mcp_clients.rs.

    client.py --url URL --mode auto|legacy          Streamable HTTP
    client.py --stdio --mode auto|legacy -- CMD ARGS..   a server process on stdin/stdout

Reads a plan from standard input: a JSON array of steps, each {"tool": NAME, "arguments": {...}}
or {"list_tools": true}. Prints one JSON object per line on standard output: first
{"connected": ...}, then one line per step, in order. The Rust test makes the assertions.
"""

import argparse
import asyncio
import json
import sys

from mcp import Client, StdioServerParameters


def emit(obj):
    print(json.dumps(obj), flush=True)


def content_texts(result):
    return [block.text for block in result.content if getattr(block, "type", None) == "text"]


async def run(server, mode, plan):
    async with Client(server, mode=mode) as client:
        info = client.server_info
        emit(
            {
                "connected": {
                    "protocol_version": client.protocol_version,
                    "server_name": info.name if info is not None else None,
                    "tools_capability": client.server_capabilities.tools is not None,
                }
            }
        )
        for step in plan:
            if step.get("list_tools"):
                names = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    names.extend(tool.name for tool in page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                emit({"tools": names})
                continue
            result = await client.call_tool(step["tool"], step.get("arguments", {}))
            emit(
                {
                    "tool": step["tool"],
                    "is_error": result.is_error,
                    "text": "\n".join(content_texts(result)),
                    "structured": result.structured_content,
                }
            )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    if args.stdio:
        if not args.command:
            parser.error("--stdio needs the server command after --")
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
    elif args.url:
        server = args.url
    else:
        parser.error("give --url URL or --stdio -- CMD ARGS")
    plan = json.load(sys.stdin)
    asyncio.run(run(server, args.mode, plan))


if __name__ == "__main__":
    main()
