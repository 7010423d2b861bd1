"""``python -m glm3_teach.classroom COMMAND``: the teacher's tools, built from the lessons themselves.

    teacher --out build/teacher [--nbgrader]     lessons with the answers filled in (or nbgrader-ready)
    grade SUBMISSION.ipynb ... --report grades.csv [--lesson L] [--cell-timeout S] [--notebook-timeout S]
    slides --out build/slides                    an offline HTML deck per lesson + RISE-ready notebooks
    site --out build/site                        the offline course website (lessons, search, guide)
    guide [--times build/lesson_times.json]      refresh the run-time table of docs/teaching.md

Every user error prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.classroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    teacher = commands.add_parser("teacher", help="write the teacher (or nbgrader) edition of every lesson")
    teacher.add_argument("--out", type=Path, default=Path("build/teacher"))
    teacher.add_argument("--nbgrader", action="store_true", help="answers inside nbgrader's solution markers")
    grade = commands.add_parser("grade", help="grade submitted notebooks")
    grade.add_argument("submissions", nargs="+", type=Path)
    grade.add_argument("--report", type=Path, default=Path("grades.csv"), help="CSV path; an .html report goes beside it")
    grade.add_argument("--lesson", type=Path, help="the lesson to grade against (default: by file name)")
    grade.add_argument("--cell-timeout", type=float, default=120.0)
    grade.add_argument("--notebook-timeout", type=float, default=900.0)
    slides = commands.add_parser("slides", help="offline HTML slide decks and RISE-ready notebooks")
    slides.add_argument("--out", type=Path, default=Path("build/slides"))
    site = commands.add_parser("site", help="the offline course website")
    site.add_argument("--out", type=Path, default=Path("build/site"))
    site.add_argument("--times", type=Path, default=Path("build/lesson_times.json"))
    guide = commands.add_parser("guide", help="refresh the measured run times in docs/teaching.md")
    guide.add_argument("--times", type=Path, default=Path("build/lesson_times.json"))
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "teacher":
        from glm3_teach.classroom.teacher import write_editions
        written = write_editions(args.out, nbgrader=args.nbgrader)
        print(f"wrote {len(written)} {'nbgrader' if args.nbgrader else 'teacher'} lessons to {args.out}")
    elif args.command == "grade":
        from glm3_teach.classroom.grade import grade_submission, write_reports
        for path in args.submissions:
            if not path.is_file():
                raise FileNotFoundError(f"no submission at {path}")
        grades = []
        for path in args.submissions:
            found = grade_submission(path, args.lesson, args.cell_timeout, args.notebook_timeout)
            passed = sum(g.passed for g in found)
            print(f"{path.name}: {passed}/{len(found)} exercises pass")
            grades += found
        write_reports(grades, args.report)
        print(f"wrote {args.report} and {args.report.with_suffix('.html')}")
    elif args.command == "slides":
        from glm3_teach.classroom.slides import write_slides
        written = write_slides(args.out)
        print(f"wrote {len(written)} slide decks to {args.out}")
    elif args.command == "site":
        from glm3_teach.classroom.site import build_site
        index = build_site(args.out, times=args.times)
        print(f"wrote the course website: {index}")
    elif args.command == "guide":
        from glm3_teach.classroom.guide import refresh_guide
        path = refresh_guide(args.times)
        print(f"refreshed the run-time table in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
