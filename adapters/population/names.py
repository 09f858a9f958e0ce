"""Kazakh and Russian personal names in Cyrillic, and the rules that derive one from another.

A child's patronymic comes from the father's first name and its surname from the
father's surname, in the form for the child's sex; a wife may take her husband's
surname. The tables are short on purpose: the world needs plausible, readable
names, not a census.

Pure data and string rules; nothing here draws random numbers.
"""

from __future__ import annotations

import enum

__all__ = [
    "FEMALE_FIRST",
    "MALE_FIRST",
    "SURNAMES",
    "NameStyle",
    "nationality",
    "patronymic",
    "surname_for",
]


def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split())


class NameStyle(enum.Enum):
    KAZAKH = "kazakh"
    RUSSIAN = "russian"


MALE_FIRST: dict[NameStyle, tuple[str, ...]] = {
    NameStyle.KAZAKH: _split(
        "Нурлан Ерлан Серик Бауыржан Асхат Дархан Ержан Марат Руслан Талгат Айдос "
        "Алибек Арман Бакыт Галым Данияр Диас Ерболат Жандос Кайрат Мурат Олжас Санжар "
        "Азамат Ильяс Тимур Рустем Бекзат Ернар Мирас Алмас Аслан Ерасыл Нуржан Самат "
        "Аян Берик Габит Мейрам Темирлан"
    ),
    NameStyle.RUSSIAN: _split(
        "Александр Алексей Андрей Дмитрий Сергей Игорь Олег Павел Роман Виктор "
        "Владимир Евгений Максим Михаил Николай Антон Денис Иван Константин Юрий Артём "
        "Георгий Григорий Степан"
    ),
}

FEMALE_FIRST: dict[NameStyle, tuple[str, ...]] = {
    NameStyle.KAZAKH: _split(
        "Айгерим Айжан Асель Гульнара Динара Жанар Жансая Карлыгаш Мадина Назерке "
        "Салтанат Сауле Томирис Улжан Аружан Дана Акмарал Алия Гаухар Индира Камила "
        "Ляззат Меруерт Дильназ Баян Айсулу Жулдыз Молдир Зарина Әсем"
    ),
    NameStyle.RUSSIAN: _split(
        "Анна Елена Ольга Наталья Татьяна Ирина Светлана Мария Екатерина Юлия "
        "Анастасия Дарья Ксения Людмила Валентина Марина Галина Вера Алина Виктория"
    ),
}

# Male forms; the female form is built by `surname_for`.
SURNAMES: dict[NameStyle, tuple[str, ...]] = {
    NameStyle.KAZAKH: _split(
        "Ахметов Абдрахманов Байжанов Жумабаев Исмаилов Касымов Мукашев Нурпеисов "
        "Оспанов Сагинтаев Тулегенов Утегенов Есимов Жакупов Калиев Султанов "
        "Сейтказиев Бекмуханбетов Аубакиров Искаков Ибраев Садыков Абенов Тлеубаев "
        "Ермеков Кенжебаев Муратов Нуркенов Рахимов Смагулов Омаров Серикбаев Дюсенов "
        "Амангельдин Кудайбергенов Мамыров Турсынов Шарипов Ержанов"
    ),
    NameStyle.RUSSIAN: _split(
        "Иванов Петров Смирнов Кузнецов Попов Васильев Соколов Михайлов Новиков "
        "Фёдоров Морозов Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов "
        "Николаев Орлов Зайцев Белов Комаров Тарасов Гусев"
    ),
}

# First names whose patronymic does not follow the regular ending rule.
_IRREGULAR = {
    "Павел": ("Павлович", "Павловна"),
    "Михаил": ("Михайлович", "Михайловна"),
    "Георгий": ("Георгиевич", "Георгиевна"),
    "Григорий": ("Григорьевич", "Григорьевна"),
    "Евгений": ("Евгеньевич", "Евгеньевна"),
    "Юрий": ("Юрьевич", "Юрьевна"),
}


def patronymic(father_first: str, male: bool, *, kazakh_form: bool = False) -> str:
    """The patronymic from a father's first name (-ович/-овна, or -ұлы/-қызы)."""
    if kazakh_form:
        return father_first + ("ұлы" if male else "қызы")
    irregular = _IRREGULAR.get(father_first)
    if irregular is not None:
        return irregular[0] if male else irregular[1]
    if father_first.endswith(("й", "ь")):
        stem, male_end, female_end = father_first[:-1], "евич", "евна"
    else:
        stem, male_end, female_end = father_first, "ович", "овна"
    return stem + (male_end if male else female_end)


def surname_for(male_form: str, male: bool) -> str:
    """A surname in the form for the given sex (Ахметов → Ахметова)."""
    return male_form if male else male_form + "а"


def nationality(style: NameStyle) -> str:
    return "КАЗАХ" if style is NameStyle.KAZAKH else "РУССКИЙ"
